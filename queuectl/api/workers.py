"""The API's worker pools: run them, list them, stop them, wait for their work, watch it
(``Queue`` inherits it)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from queuectl.errors import InvalidInput, NoWorkers, QueuePaused, WaitTimeout
from queuectl.model import State, WorkerInfo
from queuectl.model.job import unfinished
from queuectl.model.parse import job_filter, validate_timeout
from queuectl.store import Store, queue_home
from queuectl.worker.identity import pool_gone
from queuectl.worker.inprocess import MAX_THREADS, LocalPools

if TYPE_CHECKING:
    from queuectl.api.queue import Queue
    from queuectl.panel import QueuePanel


class Workers:
    """Worker pools of the queue, for ``Queue``."""

    store: Store
    db: str
    _local: LocalPools

    def workers(self) -> list[WorkerInfo]:
        """Live worker pools (a pure read: rows of pools that are gone are left out, not
        deleted; ``prune_workers`` deletes them).

        A pool is gone when it has been silent for ``Config.pool_gone_after`` seconds, or when
        it ran on this host and its process no longer exists.
        """
        return self._pools(gone=False)

    def prune_workers(self) -> list[str]:
        """Delete the rows of pools that are gone (see ``workers``); return their ids.

        Writes only when there is such a pool. Running pools also prune silent ones in their
        heartbeat; this call also catches pools of this host that were killed a moment ago.
        """
        gone = [pool.id for pool in self._pools(gone=True)]
        for pool_id in gone:
            self.store.deregister_worker(pool_id)
        return gone

    def _pools(self, *, gone: bool) -> list[WorkerInfo]:
        """The registered pools that are gone (``gone``), or those that are not."""
        config, now = self.store.config(), self.store.now()
        return [pool for pool in self.store.workers() if pool_gone(pool, now, config) == gone]

    def run_workers(
        self, count: int = 1, *, until_empty: bool = False, poll_interval: float | None = None
    ) -> None:
        """Run a pool in this process until it is stopped (or, ``until_empty``, drained)."""
        from queuectl.worker.pool import WorkerPool

        WorkerPool(self.store, count, until_empty=until_empty, poll_interval=poll_interval).run()

    def start_background_pool(self, count: int = 1) -> WorkerInfo:
        """Start a detached pool process (logging to the queue home) and return once it runs."""
        from queuectl.worker.detach import start_pool

        return start_pool(self.db, count, queue_home() / "logs", self.store.workers)

    def start_workers(self, count: int = 1, *, poll_interval: float | None = None) -> str:
        """Run a pool of ``count`` daemon threads in this process; return its id at once.

        This is how a notebook runs jobs: the pool lives as long as the kernel. Stop it with
        ``stop_workers()``; at interpreter exit it stops on its own and kills the jobs still
        running (they are recorded as failed and retried by the usual policy).
        """
        if not 1 <= count <= MAX_THREADS:
            raise InvalidInput(f"the thread count must be between 1 and {MAX_THREADS}.")
        return self._local.start(count, poll_interval)

    def stop_workers(self, wait: bool = False, timeout: float | None = None) -> int:
        """Ask every pool of this queue, here or elsewhere, to stop gracefully; return how
        many were asked. Running jobs finish and are recorded first.

        With ``wait``, block until they have exited (or ``timeout`` seconds passed).
        """
        timeout = validate_timeout(timeout)
        self.prune_workers()  # a pool that is gone is not asked, nor counted
        asked = self.store.request_stop()
        self._local.stop()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._local or self.workers():
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        return asked

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool | None = None,
        poll: float = 0.1,
        group: str | None = None,
        tag: str | None = None,
    ) -> bool:
        """Block until no job (of ``group``, with ``tag``) is blocked, pending, failed or
        processing; False if ``timeout`` passed.

        ``progress`` shows a progress bar of the jobs finished since the call (in a notebook
        a widget, in a terminal on stderr); by default only when someone is watching: in a
        Jupyter kernel or when stderr is a terminal. Jobs scheduled for later are waited for.

        Raises:
            NoWorkers: jobs are unfinished and no pool of this queue is running.
            QueuePaused: the queue is paused, and nothing runs that could finish.
        """
        from queuectl.progress import Progress

        timeout = validate_timeout(timeout)
        where = job_filter(group, tag)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = self.store.counts(where)
        with Progress(first, unfinished(first), progress) as bar:
            next_check = 0.0
            while left := unfinished(counts := self.store.counts(where)):
                bar.update(counts)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 2.0
                    if not self.workers():
                        raise NoWorkers(left, "q.start_workers(n)")
                    if not counts[State.PROCESSING] and self.store.paused():
                        raise QueuePaused(left)
                if deadline is not None and time.monotonic() > deadline:
                    return False
                time.sleep(poll)
            bar.update(counts)
        return True

    def wait_or_raise(
        self,
        timeout: float | None = None,
        progress: bool | None = None,
        *,
        group: str | None = None,
        tag: str | None = None,
    ) -> None:
        """``wait()``, raising ``WaitTimeout`` when the timeout passes first."""
        if not self.wait(timeout, progress=progress, group=group, tag=tag):
            left = unfinished(self.store.counts(job_filter(group, tag)))
            raise WaitTimeout(f"{left} job(s) still unfinished after {timeout:g} s.")

    def panel(
        self, interval: float = 1.0, *, group: str | None = None, tag: str | None = None
    ) -> QueuePanel:
        """A live ipywidgets panel of this queue (counts, one line per group, workers, recent
        jobs, the DLQ), or of one ``group``'s jobs (with ``tag``)."""
        from queuectl.panel import QueuePanel

        where = job_filter(group, tag)
        queue = cast("Queue", self)
        return QueuePanel(queue, interval=interval, group=where.group, tag=where.tag)
