"""Restart safety: stop every pool in the middle of a busy run, start again, lose nothing."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from queuectl import Outcome, State, connect
from tests.conftest import Cli, wait_for
from tests.reliability.conftest import Figure, Pools, stop_now

JOBS = 400


@pytest.mark.parametrize("stop", ["graceful", "stop-now"])
def test_sigterm_to_every_pool_mid_run_then_restart(
    rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure, stop: str
) -> None:
    ledger, release = tmp_path / "ledger", tmp_path / "release"
    ids = [f"r{n:04d}" for n in range(JOBS)]
    # For a stop now, some jobs surely run when it comes: they wait for a file until restarted.
    blockers = set(ids[JOBS // 4 : JOBS // 4 + 3]) if stop == "stop-now" else set()
    with connect(str(rcli.db)) as queue:
        queue.submit(
            {
                "id": i,
                "command": f'echo "$QUEUECTL_JOB_ID" >> {ledger}; '
                + (
                    f"until [ -e {release} ]; do sleep 0.02; done"
                    if i in blockers
                    else "sleep 0.05"
                ),
            }
            for i in ids
        )
        first = [pools.start(3), pools.start(3)]

        def busy() -> bool:
            started = set(ledger.read_text().split()) if ledger.exists() else set()
            return queue.counts()[State.COMPLETED] >= JOBS // 4 and blockers <= started

        wait_for(busy, timeout=120, what="a busy run")
        pools.wait_registered()
        if stop == "graceful":
            for pool in first:
                pool.send_signal(signal.SIGTERM)
        else:
            stop_now(first, str(release))
        assert [pool.wait(timeout=60) for pool in first] == [0, 0]
        counts = queue.counts()
        done_at_stop = counts[State.COMPLETED]
        assert counts[State.PROCESSING] == 0  # every running job was recorded on the way out
        assert done_at_stop < JOBS, "the run was not busy when stopped"
        assert queue.workers() == []

        pools.start(3)
        pools.start(3)
        release.touch()
        wait_for(lambda: queue.counts()[State.COMPLETED] == JOBS, timeout=300, what="the rest")
        attempts = queue.attempt_records()
    assert pools.terminate_all() == [0, 0]

    runs = Counter(ledger.read_text().split())
    assert set(runs) == set(ids)
    outcomes = Counter(a.outcome for a in attempts)
    assert outcomes[Outcome.LOST] == 0  # a stop by signal is never a lost lease
    twice = {job_id for job_id, n in runs.items() if n > 1}
    interrupted = {a.job_id for a in attempts if a.outcome is Outcome.FAILED}
    if stop == "graceful":
        assert twice == set() and interrupted == set()  # running jobs finished: nothing twice
    else:
        # Only killed jobs ran again (one killed before its first line ran, ran once).
        assert blockers <= twice <= interrupted
        assert all(
            a.error == "killed: the worker was stopped"
            for a in attempts
            if a.outcome is Outcome.FAILED
        )
    figure(
        f"{JOBS} jobs, SIGTERM ({stop}) to 2 pools x 3 threads after {done_at_stop} completed, "
        f"restarted: {JOBS} completed, {len(interrupted)} interrupted and run again, 0 lost"
    )


def test_a_pool_handles_sigterm_from_the_moment_it_is_registered(rcli: Cli, pools: Pools) -> None:
    """Whoever sees a pool registered may stop it with SIGTERM; the handler used to be
    installed only after the threads had started, and such a pool died of the signal."""
    with connect(str(rcli.db)) as queue:
        for _ in range(3):
            pool = pools.start(2)
            pid = pool.pid
            wait_for(
                lambda: any(w.pid == pid for w in queue.workers()),  # noqa: B023 - waited for here
                interval=0.0005,
                what="the pool to register",
            )
            pool.send_signal(signal.SIGTERM)
            assert pool.wait(timeout=60) == 0
        assert queue.workers() == []
