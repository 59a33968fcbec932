"""Kill -9 chaos: pool processes die at random while they work; nothing is lost or run twice
unless its attempt was recorded as lost, and every lost attempt belongs to a killed pool."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from queuectl import Outcome, State, connect
from queuectl.model.job import unfinished
from tests.conftest import Cli
from tests.reliability.conftest import ON_EVERY_STORE_SOAK_POSTGRES, Figure, Pools

#: every FAIL_EVERY-th job is built to fail: it ends in the DLQ after its retries
FAIL_EVERY = 50
LEASE_SECONDS = 5  # generous: a busy machine must not make a live pool lose its jobs


@dataclass
class Chaos:
    jobs: int
    pools: int = 3
    threads: int = 4
    kill_every: float = 0.5


def pool_pid(worker_id: str) -> int:
    """The pid in a pool id ``host:pid:tag``."""
    return int(worker_id.split(":")[-2])


def run_chaos(cli: Cli, pools: Pools, ledger: Path, plan: Chaos, figure: Figure) -> None:
    cli.run("config", "set", "lease_seconds", str(LEASE_SECONDS))
    ids = [f"job-{n:05d}" for n in range(plan.jobs)]
    doomed = set(ids[FAIL_EVERY - 1 :: FAIL_EVERY])
    with connect(str(cli.db)) as queue:
        queue.submit(
            {
                "id": job_id,
                # The ledger counts runs of the command itself, whatever the store says.
                "command": f'echo "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> {ledger}; '
                + ("exit 3" if job_id in doomed else "sleep 0.05"),
                "max_retries": 1 if job_id in doomed else 1000,
            }
            for job_id in ids
        )
        rng = random.Random(6)
        killed: set[int] = set()
        for _ in range(plan.pools):
            pools.start(plan.threads)
        started = time.monotonic()
        while unfinished(queue.counts()) > 0:
            time.sleep(plan.kill_every)
            victim = rng.choice(pools.live())
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed.add(victim.pid)
            pools.start(plan.threads)
            assert time.monotonic() - started < 3000, "the chaos run does not end"
        elapsed = time.monotonic() - started
        assert set(pools.terminate_all()) == {0}  # the survivors stop cleanly
        jobs = {job.id: job for job in queue.job_records()}
        attempts = queue.attempt_records()
        kept_counts = queue.counts()

    # The counts kept by triggers, through every kill, agree with the jobs themselves.
    assert kept_counts == {state: sum(j.state is state for j in jobs.values()) for state in State}

    # Every job is finished: completed, or dead if it was built to fail.
    assert sorted(jobs) == ids
    assert {job.id for job in jobs.values() if job.state is State.DEAD} == doomed
    assert all(job.state is State.COMPLETED for job in jobs.values() if job.id not in doomed)
    assert all(a.outcome is not None for a in attempts), "an attempt was never finished"

    by_job: dict[str, list[Outcome | None]] = defaultdict(list)
    for attempt in attempts:
        by_job[attempt.job_id].append(attempt.outcome)
    lost = [a for a in attempts if a.outcome is Outcome.LOST]
    # Each lost attempt matches a kill: a pool that was not killed never lost a job.
    assert {pool_pid(a.worker_id) for a in lost} <= killed
    # No job completed twice; a job that ran more than once lost an attempt (or was built to
    # fail), and no attempt number ever ran twice.
    assert all(outcomes.count(Outcome.COMPLETED) <= 1 for outcomes in by_job.values())
    runs = Counter(ledger.read_text().splitlines())
    assert max(runs.values()) == 1, "an attempt ran twice"
    runs_per_job = Counter(line.split()[0] for line in runs)
    duplicates = {job_id for job_id, n in runs_per_job.items() if n > 1}
    for job_id in duplicates - doomed:
        assert Outcome.LOST in by_job[job_id], f"{job_id} ran twice without a lost attempt"
    assert set(runs_per_job) == set(ids)  # every command ran
    assert lost, "no kill hit a running job: the run did not test recovery"

    figure(
        f"{plan.jobs} jobs, {plan.pools} pools x {plan.threads} threads, "
        f"{len(killed)} kills (one every {plan.kill_every} s), {len(lost)} lost attempts, "
        "0 jobs completed twice, "
        f"{len(duplicates - doomed)} commands run again after a lost attempt, "
        f"{len(doomed)} built to fail -> dead, {len(attempts)} attempts, {elapsed:.1f} s"
    )


@ON_EVERY_STORE_SOAK_POSTGRES
@pytest.mark.timeout(600)
def test_kill_9_chaos(rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure) -> None:
    run_chaos(rcli, pools, tmp_path / "ledger", Chaos(jobs=1200), figure)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_kill_9_chaos_soak(rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure) -> None:
    run_chaos(rcli, pools, tmp_path / "ledger", Chaos(jobs=20_000, kill_every=0.3), figure)
