"""The worker pool: N threads in one process, each looping claim -> run -> record.

A thread records a result and claims its next job in one store call (one transaction on
SQLite), so a busy pool pays one commit per job.

A pool registers itself as a worker row. A heartbeat thread renews the leases of the jobs the
pool runs, picks up stop requests written to the store, refreshes the configuration, and
recovers jobs whose lease expired anywhere in the queue (their worker was killed). Idle threads
poll; the store's ``watch`` hook wakes them sooner when it can tell that work arrived.

When the store cannot be reached (a database server restarting), each thread retries with
exponential backoff and carries on once it is back.

Stopping is graceful: no new claims, running jobs finish and are recorded, then the pool
deregisters. ``stop(now=True)`` also kills the running jobs' process groups; those attempts are
recorded as failed. Threads never print: problems go to the ``queuectl.worker`` logger.

Control from elsewhere goes through the store: a cancel request for a running job is noticed
when the store's ``watch`` reports a change (a cancel thread then reads the requests of the
pool's running jobs) and, as a backstop, at every heartbeat; the job's process group is then
stopped and its attempt recorded as ``cancelled``. A paused queue has nothing to claim. A
running job's output reaches the store about once a second while it changes, so ``logs
--follow`` works from any host. With ``retention`` set, old finished jobs are deleted, a
bounded batch a minute. These run on a control thread, so that the heartbeat's lease renewals
never wait for them, and the thread supervising a job never waits for the store.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from queuectl.errors import QueuectlError
from queuectl.logs import worker_log
from queuectl.model import Claim, Config, Outcome, RunResult, State
from queuectl.model.job import FINISHED, unfinished
from queuectl.model.params import param_env
from queuectl.store.base import Store
from queuectl.worker import lifecycle
from queuectl.worker.escapes import TRACKER
from queuectl.worker.identity import host_name, new_worker_id
from queuectl.worker.results import ResultFiles
from queuectl.worker.runner import Stop, announce_worker, run_command
from queuectl.worker.wakeup import Wakeup

log = worker_log
T = TypeVar("T")
#: the error of an attempt stopped because its job was cancelled
CANCELLED_BY_REQUEST = "cancelled by request"


@dataclass
class _Running:
    claim: Claim
    stop: Stop
    #: its output so far, not yet written to the store (the runner never waits for the store)
    output: RunResult | None = None


#: longest pause between two tries of a store call that keeps failing, seconds
MAX_BACKOFF = 2.0
#: the shortest pause between two reads of cancel requests prompted by store changes: a busy
#: SQLite queue reports a change at every commit
CANCEL_CHECK_GAP = 0.02
#: the longest a running job's new output waits before the control thread writes it
OUTPUT_FLUSH = 0.25
#: seconds between two batches of pruning, and the most jobs one batch deletes
PRUNE_EVERY = 60.0
PRUNE_BATCH = 1000


class WorkerPool:
    """A pool of worker threads serving one queue."""

    def __init__(
        self,
        store: Store,
        threads: int = 1,
        *,
        poll_interval: float | None = None,
        until_empty: bool = False,
        worker_id: str | None = None,
        report_output: bool = True,
    ) -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.store = store
        self.threads = threads
        self.until_empty = until_empty
        self.worker_id = worker_id or new_worker_id()
        self._poll_override = poll_interval
        #: whether running jobs' output goes to the store as it comes (benchmarks turn it off
        #: to measure what it costs)
        self.report_output = report_output
        self._config = Config()
        self._wakeup = Wakeup()
        self._stopping = threading.Event()
        self._killing = threading.Event()
        self._workers_done = threading.Event()
        self._stopped = threading.Event()
        self._store_changed = threading.Event()
        self._next_prune = 0.0
        self._active_threads = 0
        self._next_renewal = 0.0
        self._running: dict[int, _Running] = {}
        # Re-entrant: a second signal can arrive while the handler of the first holds it.
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._failures = threading.local()  # consecutive failed store calls of each thread
        self._unwatch: Callable[[], None] = lambda: None
        self._results = ResultFiles()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Register the pool and start its threads; returns at once."""
        self._config = self.store.config()
        self._register()
        announce_worker(self.worker_id)  # its watchdog, if any, kills this id's jobs' processes
        lifecycle.recover_expired(self.store, self._config)
        self._unwatch = self.store.watch(self._on_store_change)
        self._active_threads = self.threads
        for n in range(self.threads):
            thread = threading.Thread(
                target=self._work, name=f"queuectl-worker-{n + 1}", daemon=True
            )
            self._threads.append(thread)
        self._threads.append(
            threading.Thread(target=self._heartbeat, name="queuectl-heartbeat", daemon=True)
        )
        self._threads.append(
            threading.Thread(target=self._control, name="queuectl-control", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        log.info(
            "pool %s started with %d thread(s) on %s",
            self.worker_id,
            self.threads,
            self.store.location,
        )

    def stop(self, now: bool = False) -> None:
        """Stop claiming; with ``now``, also kill the running jobs. Does not wait."""
        self._stopping.set()
        if now:
            self._killing.set()
            with self._lock:
                for running in self._running.values():
                    running.stop.request()
        self._wakeup.notify()

    def wake(self) -> None:
        """Make idle threads look for work now (code in this process enqueued a job)."""
        self._wakeup.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the pool has stopped and its threads have ended; True if they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._stopped.wait(timeout):
            return False
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        return not any(t.is_alive() for t in self._threads if t is not threading.current_thread())

    def run(self) -> None:
        """Run in the foreground until stopped by a signal or a stop request (see
        ``foreground.run``)."""
        from queuectl.worker.foreground import run

        run(self)

    # -- threads ------------------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        return self._poll_override or self._config.poll_interval

    def _work(self) -> None:
        ident = threading.get_ident()
        claim: Claim | None = None
        try:
            # A job claimed together with the last result still runs when a stop comes in
            # meanwhile: like a job that had just started, it is finished, not dropped.
            while claim is not None or not self._stopping.is_set():
                if claim is None:
                    claim = self._guard(
                        lambda: self.store.claim(self.worker_id, self._config.lease_seconds)
                    )
                if claim is None:
                    if self.until_empty and self._guard(self._drained):
                        self.stop()
                        break
                    self._wakeup.wait(self.poll_interval)
                    continue
                running = _Running(claim, Stop())
                with self._lock:
                    self._running[ident] = running
                    if self._killing.is_set():  # stop(now=True) came in while claiming
                        running.stop.request()
                try:
                    claim = self._record(claim, self._execute(running))
                finally:
                    with self._lock:
                        del self._running[ident]
                self._wakeup.notify()  # a retry may be due, or the queue drained
        finally:
            with self._lock:
                self._active_threads -= 1
                if self._active_threads == 0:
                    self._workers_done.set()
            self._guard(self.store.release)

    def _execute(self, running: _Running) -> RunResult:
        job, fence = running.claim.job, running.claim.fence

        def report_output(so_far: RunResult) -> None:
            running.output = so_far  # the control thread writes it (see _write_outputs)

        try:
            result = run_command(
                job.command,
                timeout=job.timeout,
                max_bytes=self._config.output_max_bytes,
                cancel=running.stop,
                env={
                    **job.env,
                    **param_env(job.params),
                    # The queue, so a job can enqueue more; never its password (it would
                    # reach every job's environment, and whatever a job prints or stores).
                    "QUEUECTL_DB": self.store.location_for_jobs,
                    "QUEUECTL_JOB_ID": job.id,
                    "QUEUECTL_ATTEMPT": str(running.claim.number),
                    "QUEUECTL_WORKER_ID": self.worker_id,
                    "QUEUECTL_RESULT": self._results.path(fence),
                },
                cwd=job.directory(self._config.job_directory),
                on_output=report_output if self.report_output else None,
            )
        except Exception as exc:  # e.g. out of file descriptors: the attempt fails, not the pool
            log.exception("job %s: the worker could not supervise it", job.id)
            result = RunResult(Outcome.FAILED, None, f"worker error: {exc}")
        result = self._results.collect(fence, result, self._config.result_max_bytes)
        log.info(
            "job %s attempt %d: %s%s",
            job.id,
            running.claim.number,
            result.outcome.value,
            f" ({result.error})" if result.error else "",
        )
        return result

    def _record(self, claim: Claim, result: RunResult) -> Claim | None:
        """Persist an attempt's result, retrying while the store fails; unless the pool is
        stopping, claim the thread's next job in the same step and return it."""
        job = claim.job
        take_next = True
        for delay in (0, 0.1, 0.5, 1, 2, 5, 5, 5, 10, 10):
            if delay:  # (even sleep(0) costs a thread switch on this hot path)
                time.sleep(delay)
            try:
                recorded, next_claim = self._persist(claim, result, take_next)
            except QueuectlError as exc:
                log.warning("job %s: recording the result failed (%s); retrying", job.id, exc)
                continue
            except Exception:  # a thread must neither die nor print: log it, record alone
                log.exception("job %s: recording the result failed; retrying", job.id)
                take_next = False
                continue
            if not recorded:
                log.warning("job %s attempt %s: lease lost, result discarded", job.id, claim.number)
            return next_claim
        log.error("job %s: could not record its result; it will be recovered as lost", job.id)
        return None

    def _persist(
        self, claim: Claim, result: RunResult, take_next: bool
    ) -> tuple[bool, Claim | None]:
        if not take_next or self._stopping.is_set():  # a stopping pool takes no next job
            return lifecycle.record(self.store, claim, result, self._config), None
        return lifecycle.record_and_claim(self.store, claim, result, self._config)

    def _drained(self) -> bool:
        counts = self.store.counts()
        if not unfinished(counts):
            return True
        if not counts[State.PROCESSING] and self.store.paused():
            log.info("pool %s: the queue is paused and nothing runs: done", self.worker_id)
            return True
        return False

    def _heartbeat(self) -> None:
        try:
            while True:
                self._guard(self._beat)
                if self._workers_done.wait(min(self._config.lease_seconds / 3, 1.0)):
                    break
            self._guard(lambda: self.store.deregister_worker(self.worker_id))
            log.info("pool %s stopped", self.worker_id)
        finally:
            self._guard(self._unwatch)  # a failure here must not keep join() waiting forever
            self._stopped.set()
            self._guard(self.store.release)

    def _beat(self) -> None:
        # Writes (heartbeat, lease renewal) every lease/3; in between only reads, so an idle
        # pool notices stop requests quickly without a disk write every second.
        if time.monotonic() >= self._next_renewal:
            self._next_renewal = time.monotonic() + self._config.lease_seconds / 3
            stop = self.store.heartbeat(self.worker_id)
            self._renew()
        else:
            stop = self.store.stop_requested(self.worker_id)
        if stop is None:  # pruned while we were frozen: we are alive after all
            self._register()
        elif stop and not self._stopping.is_set():
            log.info("pool %s: stop requested, stopping gracefully", self.worker_id)
            self.stop()
        self._check_cancels()
        self._config = self.store.config()
        lifecycle.recover_expired(self.store, self._config)
        self.store.prune_workers(self._config.pool_gone_after)

    def _on_store_change(self) -> None:
        """What the store's ``watch`` calls: work may be claimable, a cancel may be asked."""
        self._wakeup.notify()
        self._store_changed.set()

    def _control(self) -> None:
        """The pool's second thread of bookkeeping, beside the heartbeat (whose lease renewals
        must never wait for it): read the running jobs' cancel requests whenever the store
        reports a change, write their output so far, prune by ``retention``, reap orphans."""
        try:
            while not self._workers_done.is_set():
                if self._store_changed.wait(OUTPUT_FLUSH):
                    self._store_changed.clear()
                    self._guard(self._check_cancels)
                self._guard(self._write_outputs)
                self._guard(self._prune)
                TRACKER.reap()
                self._workers_done.wait(CANCEL_CHECK_GAP)
        finally:
            self._results.close()
            self._guard(self.store.release)

    def _write_outputs(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for r in running:
            output, r.output = r.output, None
            if output is not None:
                self.store.record_output(r.claim.fence, output)

    def _prune(self) -> None:
        if not self._config.retention or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        before = self.store.now() - timedelta(seconds=self._config.retention)
        pruned = self.store.prune(before, FINISHED, limit=PRUNE_BATCH, skip_if_busy=True)
        if pruned:
            log.info("pool %s: pruned %d finished job(s) (retention)", self.worker_id, pruned)

    def _check_cancels(self) -> None:
        with self._lock:
            running = list(self._running.values())
        if not running:
            return
        asked = self.store.cancel_requests([r.claim.fence for r in running])
        for r in running:
            if r.claim.fence.attempt_id in asked:
                r.stop.request(Outcome.CANCELLED, CANCELLED_BY_REQUEST)

    def _register(self) -> None:
        self.store.register_worker(self.worker_id, host_name(), os.getpid(), self.threads)

    def _renew(self) -> None:
        with self._lock:
            running = list(self._running.values())
        held = self.store.renew([r.claim.fence for r in running], self._config.lease_seconds)
        for r in running:
            if r.claim.fence.attempt_id not in held:
                # The job was recovered elsewhere: our run no longer counts.
                r.stop.request(Outcome.FAILED, "killed: the worker lost the job's lease")

    def _guard(self, action: Callable[[], T], *, pause: bool = True) -> T | None:
        """Run a store call; on an error, log it, pause (unless not ``pause``), and return None.

        The pause doubles with each failure in a row of this thread (up to ``MAX_BACKOFF``),
        so a store that is down is tried again and again without a storm of calls and logs.
        """
        failures: int = getattr(self._failures, "count", 0)
        try:
            value = action()
        except QueuectlError as exc:
            log.warning("worker %s: %s", self.worker_id, exc)
        except Exception:  # a thread must neither die nor print: log it and carry on
            log.exception("worker %s: unexpected error", self.worker_id)
        else:
            if failures:
                log.info("worker %s: the queue answers again", self.worker_id)
                self._failures.count = 0
            return value
        self._failures.count = failures + 1
        if pause:
            self._stopping.wait(min(self.poll_interval * 2**failures, MAX_BACKOFF))
        return None
