"""How much of its time a busy pool holds the SQLite write lock.

A pool stopped by SIGSTOP (which cannot be caught) while it holds the lock locks every other
process of the queue out until it is continued; Ctrl-Z (SIGTSTP) is caught and never stops a
pool inside a transaction. This figure is the chance that a SIGSTOP at a random moment
catches a busy pool holding the lock.
"""

from __future__ import annotations

import time

import queuectl
from benchmarks.queue_figures import fresh_queue
from queuectl.store.sqlite import SqliteStore
from queuectl.worker.pool import WorkerPool


def lock_share(total: int = 2000, threads: int = 4, command: str = "true") -> float:
    """The share of wall time a pool of ``threads`` draining ``total`` jobs holds the write
    lock (in this process, so its store's own account can be read)."""
    with fresh_queue() as queue:
        queue.enqueue_many([command] * total)
        store = queuectl.connect(queue.db).store
        assert isinstance(store, SqliteStore)
        pool = WorkerPool(store, threads, until_empty=True)
        started = time.perf_counter()
        held_before = store.write_lock_seconds
        pool.start()
        pool.join()
        elapsed = time.perf_counter() - started
        held = store.write_lock_seconds - held_before
        store.close()
        assert queue.counts()[queuectl.State.COMPLETED] == total
        return held / elapsed
