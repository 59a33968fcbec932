"""The worker pool in this process, on both stores: what a stop leaves behind, and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from queuectl.api import Queue, connect
from queuectl.model import Claim, State
from queuectl.store import open_store
from queuectl.store.base import Store
from queuectl.worker.pool import WorkerPool
from tests.conftest import wait_for


@pytest.fixture
def queue(queue_target: str) -> Iterator[Queue]:
    q = connect(queue_target)
    yield q
    q.close()


def test_a_job_claimed_with_the_last_result_runs_although_a_stop_came_between(
    queue: Queue, queue_target: str
) -> None:
    """A thread claims its next job together with the last result; a graceful stop that comes
    in between must let that job run, not leave it ``processing`` with no one to run it."""
    queue.enqueue_many(["true"] * 3)
    store = open_store(queue_target)
    pool = WorkerPool(store, threads=1, poll_interval=0.05)
    finish_and_claim = store.finish_and_claim

    def stop_then_hand_over(*args: Any) -> tuple[bool, Claim | None]:
        recorded, claim = finish_and_claim(*args)
        pool.stop()  # the stop arrives just after the next job was claimed
        return recorded, claim

    store.finish_and_claim = stop_then_hand_over  # type: ignore[method-assign,assignment]
    try:
        pool.start()
        assert pool.join(timeout=60)
        counts = store.counts()
        assert (counts[State.COMPLETED], counts[State.PROCESSING], counts[State.PENDING]) == (
            2,
            0,
            1,
        )
        assert all(a.finished_at is not None for a in store.attempts())
    finally:
        store.close()


def test_a_graceful_stop_amid_a_drain_leaves_every_claimed_job_finished(
    queue: Queue, queue_target: str
) -> None:
    queue.enqueue_many(["true"] * 300)
    store = open_store(queue_target)
    try:
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
    finally:
        store.close()


def test_an_unexpected_error_while_claiming_the_next_job_keeps_the_thread_and_the_result(
    queue: Queue, queue_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue.enqueue_many(["true"] * 3)
    store: Store = open_store(queue_target)
    failures = iter([KeyError("a bug in a store")])

    def broken_once(*args: Any) -> tuple[bool, Claim | None]:
        if error := next(failures, None):
            raise error
        return Store.finish_and_claim(store, *args)

    store.finish_and_claim = broken_once  # type: ignore[method-assign,assignment]
    try:
        pool = WorkerPool(store, threads=1, poll_interval=0.05, until_empty=True)
        pool.start()
        assert pool.join(timeout=60)
        assert store.counts()[State.COMPLETED] == 3
        assert "recording the result failed" in caplog.text
    finally:
        store.close()
