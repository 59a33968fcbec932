"""Kill -9 chaos on a graph of dependencies: pools die while they run stages of jobs, each
stage after the whole stage before (a fan-in, then a fan-out). Every job completes exactly
once, and never starts before all of its parents completed: a run that lost its lease never
releases its dependents, and the run that completes releases them once."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from queuectl import Outcome, State, connect
from queuectl.model.job import unfinished
from tests.conftest import Cli
from tests.reliability.conftest import ON_EVERY_STORE, Figure, Pools

STAGES = 8
WIDTH = 3
#: a short lease, so that a killed run's job is taken again soon (one stage runs at a time)
LEASE_SECONDS = 2


@ON_EVERY_STORE
@pytest.mark.timeout(300)
def test_a_graph_of_stages_under_kill_9(
    rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure
) -> None:
    ledger = tmp_path / "ledger"
    rcli.run("config", "set", "lease_seconds", str(LEASE_SECONDS))
    with connect(str(rcli.db)) as queue:
        for stage in range(STAGES):
            queue.submit(
                {
                    "id": f"s{stage:02d}-{n}",
                    "group": f"stage-{stage:02d}",
                    "command": f'echo "$QUEUECTL_JOB_ID" >> {ledger}; sleep 0.2',
                    "max_retries": 1000,
                    **({"after_group": f"stage-{stage - 1:02d}"} if stage else {}),
                }
                for n in range(WIDTH)
            )
        assert queue.counts()[State.BLOCKED] == (STAGES - 1) * WIDTH
        rng = random.Random(15)
        killed = 0
        for _ in range(3):
            pools.start(2)
        started = time.monotonic()
        while unfinished(queue.counts()) > 0:
            time.sleep(0.7)
            victim = rng.choice(pools.live())
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed += 1
            pools.start(2)
            assert time.monotonic() - started < 240, "the chaos run does not end"
        elapsed = time.monotonic() - started
        assert set(pools.terminate_all()) == {0}
        jobs = {job.id: job for job in queue.job_records()}
        attempts = queue.attempt_records()

    assert len(jobs) == STAGES * WIDTH
    assert all(job.state is State.COMPLETED for job in jobs.values())
    completed = {a.job_id: a for a in attempts if a.outcome is Outcome.COMPLETED}
    assert Counter(a.job_id for a in attempts if a.outcome is Outcome.COMPLETED) == Counter(
        set(jobs)
    ), "a job completed twice"
    # No attempt of a stage started before every job of the stage before had completed.
    for stage in range(1, STAGES):
        ends = [completed[f"s{stage - 1:02d}-{n}"].finished_at for n in range(WIDTH)]
        parents_done = max(end for end in ends if end is not None)
        firsts = [a.started_at for a in attempts if a.job_id.startswith(f"s{stage:02d}-")]
        assert min(firsts) >= parents_done, f"stage {stage} started before its parents ended"
    runs = Counter(ledger.read_text().split())
    lost = [a for a in attempts if a.outcome is Outcome.LOST]
    assert set(runs) == set(jobs)
    for job_id, n in runs.items():
        assert n == 1 or any(a.job_id == job_id for a in lost), f"{job_id} ran twice"
    figure(
        f"{STAGES} stages x {WIDTH} jobs, each stage after the whole one before: {killed} "
        f"kills, {len(lost)} lost attempts, every job completed once, no stage started early, "
        f"{elapsed:.1f} s"
    )
