"""The worker pool in this process, on both stores: what a stop leaves behind."""

from __future__ import annotations

from queuectl.api import connect
from queuectl.model import State
from queuectl.store import open_store
from queuectl.worker.pool import WorkerPool
from tests.conftest import wait_for


def test_a_graceful_stop_amid_a_drain_leaves_every_claimed_job_finished(
    queue_target: str,
) -> None:
    """Threads claim their next job together with the last result; a stop that comes in
    between must let that job run, not leave it ``processing`` with no one to run it."""
    store = open_store(queue_target)
    try:
        queue = connect(queue_target)
        queue.enqueue_many(["true"] * 300)
        pool = WorkerPool(store, threads=4, poll_interval=0.05)
        pool.start()
        wait_for(lambda: store.counts()[State.COMPLETED] >= 40, what="40 jobs done")
        pool.stop()
        assert pool.join(timeout=60)
        counts = store.counts()
        assert counts[State.PROCESSING] == 0
        assert counts[State.PENDING] > 0  # the stop came mid-drain
        attempts = store.attempts()
        assert attempts and all(a.finished_at is not None for a in attempts)
        assert len(attempts) == counts[State.COMPLETED]
        queue.close()
    finally:
        store.close()
