"""Worker pools that run as threads of the calling process (a notebook's kernel, a script).

``LocalPools`` holds the pools one ``Queue`` started. At interpreter exit every such pool is
stopped and the jobs it is still running are killed and recorded (their threads cannot outlive
the process, and a job left running would only come back later as ``lost``).

Such a process also runs its user's own code, so it is not made a child subreaper (the orphans
of the user's programs would become its zombies): at the end of each attempt, processes that
left the job's process group are found by scanning all of ``/proc`` for the attempt's marker in
their environment instead (``queuectl.worker.escapes``), at a cost that grows with the number
of processes on the machine. One that also cleared its environment is not found; nor are the
jobs of a kernel that is killed outright (no watchdog here).
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import TYPE_CHECKING

from queuectl.store.base import Store

if TYPE_CHECKING:
    from queuectl.worker.pool import WorkerPool

#: the most threads one pool may have
MAX_THREADS = 256

#: how long the exit handler lets killed jobs be recorded
EXIT_GRACE = 10.0

#: every pool started here and not yet seen ended, for the exit handler. Strong references: a
#: queue closed with ``wait=False`` is dropped while its pools still finish their jobs.
_STARTED: list[WorkerPool] = []
_exit_handler_registered = False
_lock = threading.Lock()


class LocalPools:
    """The in-process pools of one queue."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pools: list[WorkerPool] = []

    def start(self, count: int, poll_interval: float | None = None) -> str:
        """Start a pool of ``count`` daemon threads; return its id once it is registered."""
        from queuectl.worker.pool import WorkerPool

        pool = WorkerPool(self.store, count, poll_interval=poll_interval)
        pool.start()
        global _exit_handler_registered
        with _lock:
            self._pools.append(pool)
            _forget_ended()
            _STARTED.append(pool)
            # Registered once a pool exists, so after logging's handler: it runs before that.
            if not _exit_handler_registered:
                atexit.register(_stop_all_at_exit)
                _exit_handler_registered = True
        return pool.worker_id

    def __bool__(self) -> bool:
        return bool(self.running())

    def running(self) -> list[WorkerPool]:
        """The pools whose threads have not all ended; forgets the others."""
        with _lock:
            self._pools = [pool for pool in self._pools if not pool.join(0)]
            _forget_ended()
            return list(self._pools)

    def wake(self) -> None:
        """Make idle threads look for work now: a job was enqueued or retried here."""
        for pool in self.running():
            pool.wake()

    def stop(self, now: bool = False, timeout: float | None = 0) -> bool:
        """Stop claiming (``now``: also kill running jobs); wait up to ``timeout`` seconds
        (``None``: as long as it takes) for the threads to end. True if all have ended."""
        pools = self.running()
        for pool in pools:
            pool.stop(now=now)
        deadline = None if timeout is None else time.monotonic() + timeout
        for pool in pools:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            pool.join(left)
        return not self.running()


def _forget_ended() -> None:
    """Drop the pools whose threads have all ended from ``_STARTED`` (hold ``_lock``)."""
    _STARTED[:] = [pool for pool in _STARTED if not pool.join(0)]


def _stop_all_at_exit() -> None:
    with _lock:
        pools = [pool for pool in _STARTED if not pool.join(0)]
    for pool in pools:
        pool.stop(now=True)
    deadline = time.monotonic() + EXIT_GRACE
    for pool in pools:
        pool.join(max(deadline - time.monotonic(), 0))
