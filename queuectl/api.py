"""The Python API: ``queuectl.connect(...)`` returns a ``Queue``.

The CLI and the notebook magic are both built on this class; it holds no SQL and no rendering.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from queuectl.errors import InvalidInput, NotFound, NoWorkers, WaitTimeout
from queuectl.model import Attempt, Config, Job, NewJob, QueueCopy, State, WorkerInfo
from queuectl.model import config as config_keys
from queuectl.model import metrics as metrics_model
from queuectl.model.job import FINISHED, unfinished
from queuectl.model.parse import (
    job_changes,
    new_job,
    parse_duration,
    validate_limit,
    validate_state,
    validate_timeout,
)
from queuectl.model.status import QueueStatus as QueueStatus  # re-exported: its old home
from queuectl.store import Store, open_store, queue_home, redact, resolve_location
from queuectl.worker.identity import pool_gone
from queuectl.worker.inprocess import MAX_THREADS, LocalPools

if TYPE_CHECKING:
    import pandas as pd

    from queuectl.follow import Chunk
    from queuectl.panel import QueuePanel

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_id() -> str:
    """A short random job id (10 characters from ``a-z0-9``)."""
    chosen: list[str] = []
    while len(chosen) < 10:
        # Bytes below 252 (= 7 x 36) map evenly onto the 36 characters.
        chosen += [_ID_ALPHABET[b % 36] for b in os.urandom(16) if b < 252]
    return "".join(chosen[:10])


def connect(db: str | None = None) -> Queue:
    """Open a queue: a path or URL, else ``QUEUECTL_DB``, else ``~/.queuectl/queue.db``."""
    location = resolve_location(db)
    return Queue(open_store(location), location)


class Queue:
    """A job queue: enqueue shell commands, inspect jobs and their history, run workers."""

    def __init__(self, store: Store, db: str | None = None) -> None:
        self.store = store
        #: the location as given to ``connect(db)``: it opens this queue again, and may hold
        #: a password (show ``location`` instead)
        self.db = db or store.location
        self._local = LocalPools(store)

    def __repr__(self) -> str:
        return f"<queuectl.Queue {self.location}>"

    @property
    def location(self) -> str:
        """Where the queue lives, safe to print."""
        return redact(self.db)

    @property
    def target(self) -> str:
        """The former name of ``db``, kept for existing code."""
        return self.db

    def close(self, wait: bool = True) -> None:
        """Stop this process's pools of the queue, then close the database.

        Running jobs finish and are recorded first: ``close`` waits for them, or, with
        ``wait=False``, returns at once while they finish in the background.
        """
        self._local.stop(timeout=None if wait else 0)
        self.store.close()

    def release(self) -> None:
        """Give back the calling thread's database connection (a thread that is done with the
        queue calls this; the next call from it opens a new one)."""
        self.store.release()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, command: str, **fields: Any) -> str:
        """Enqueue one shell command; return its id.

        Keyword arguments are job fields: ``id``, ``max_retries``, ``priority``, ``run_at``
        (ISO 8601 or datetime) or ``delay`` (seconds, ``"10m"`` or a timedelta, counted from
        the queue's clock), ``timeout`` (seconds), ``cwd`` (the directory to run in; default:
        this process's current directory) and ``env`` (variables for the job, on top of the
        worker's environment; this process's own environment is not copied).
        """
        return self.submit([{**fields, "command": command}])[0].id

    def enqueue_many(self, jobs: Iterable[str | Mapping[str, Any]]) -> list[str]:
        """Enqueue many jobs in one transaction (all or none); return their ids in order.

        Each job is a command string or a mapping of job fields with a ``command``.
        """
        fields = [{"command": job} if isinstance(job, str) else job for job in jobs]
        return [job.id for job in self.submit(fields)]

    def submit(self, jobs: Iterable[Mapping[str, Any] | NewJob]) -> list[Job]:
        """Enqueue jobs in one transaction (all or none); return the stored jobs.

        Each job is a mapping of job fields, validated here, or a ``NewJob`` made by
        ``model.parse.new_job`` (validated already: a front end checks its input before it
        opens the queue, which may create it).
        """
        validated = [job if isinstance(job, NewJob) else new_job(job) for job in jobs]
        if not validated:
            raise InvalidInput("no jobs given.")
        ids = [job.id for job in validated if job.id is not None]
        if len(ids) != len(set(ids)):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise InvalidInput(f"job id '{duplicate}' is given twice.")
        here = _current_directory()
        with_ids = [_placed(job if job.id else _with_id(job), here) for job in validated]
        enqueued = self.store.enqueue(with_ids)
        self._local.wake()
        return enqueued

    def get(self, job_id: str) -> Job:
        """One job (``NotFound`` if there is none)."""
        return self.store.get(job_id)

    def jobs(self, state: State | str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Jobs as a DataFrame indexed by id, newest first, optionally of one state."""
        from queuectl.frames import jobs_frame

        return jobs_frame(self.job_records(state, limit))

    def dlq(self, limit: int | None = None) -> pd.DataFrame:
        """The dead letter queue (jobs that used up their retries) as a DataFrame."""
        return self.jobs(State.DEAD, limit)

    def attempts(self, job_id: str | None = None) -> pd.DataFrame:
        """The attempt history as a DataFrame: one row per attempt, of one job or of all."""
        from queuectl.frames import attempts_frame

        if job_id is not None:
            commands = {job_id: self.get(job_id).command}
        else:
            commands = self.store.commands()
        return attempts_frame(self.attempt_records(job_id), commands)

    def job_records(self, state: State | str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs as ``Job`` objects, newest first, optionally of one state."""
        chosen = validate_state(state) if isinstance(state, str) else state
        return self.store.jobs(chosen, validate_limit(limit))

    def attempt_records(self, job_id: str | None = None) -> list[Attempt]:
        """Attempts as ``Attempt`` objects (with output tails), in start order."""
        return self.store.attempts(job_id)

    def retry(self, *job_ids: str, all_dead: bool = False, dead_only: bool = False) -> list[Job]:
        """Run finished jobs (completed, dead or cancelled) again: back to pending, due at
        once, attempts reset; their history stays. All or none.

        ``all_dead``: every dead job. ``dead_only``: refuse jobs that are not dead (what
        ``dlq retry`` does).
        """
        if all_dead:
            retried = self.store.retry_all_dead()
        elif not job_ids:
            raise InvalidInput("name the jobs to retry, or retry all dead ones.")
        else:
            states = (State.DEAD,) if dead_only else tuple(FINISHED)
            retried = self.store.retry(_unique(job_ids), states)
        self._local.wake()
        return retried

    # -- control ------------------------------------------------------------------------------

    def cancel(
        self,
        *job_ids: str,
        all_pending: bool = False,
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, State]:
        """Cancel jobs, all or none; return each one's state afterwards.

        A pending or failed job is ``cancelled`` at once. A running one is stopped by its
        pool (SIGTERM to its process group, SIGKILL after a grace period), wherever it runs;
        with ``wait`` this waits for that (at most ``timeout`` seconds, by default the grace
        period and a few seconds more). Its state is then ``cancelled``, or ``completed`` if
        it finished first; ``processing`` if it is still stopping (its pool may be gone: it
        is cancelled once its lease runs out). ``all_pending``: every pending or failed job.

        Raises:
            NotFound: an id is unknown. InvalidTransition: a job is finished already.
        """
        if all_pending == bool(job_ids):
            raise InvalidInput("name the jobs to cancel, or cancel all pending ones (not both).")
        timeout = validate_timeout(timeout)
        states = self.store.cancel(None if all_pending else _unique(job_ids))
        running = [job_id for job_id, state in states.items() if state is State.PROCESSING]
        if running and wait:
            from queuectl.model.policy import KILL_GRACE

            deadline = time.monotonic() + (KILL_GRACE + 5.0 if timeout is None else timeout)
            while running and time.monotonic() < deadline:
                time.sleep(0.02)
                for job_id in list(running):
                    states[job_id] = self.store.get(job_id).state
                    if states[job_id] is not State.PROCESSING:
                        running.remove(job_id)
        return states

    def move_to_dlq(self, *job_ids: str) -> list[Job]:
        """Move pending or failed jobs straight to the dead letter queue; all or none."""
        if not job_ids:
            raise InvalidInput("name the pending or failed jobs to move to the DLQ.")
        return self.store.bury(_unique(job_ids))

    def edit(self, job_id: str, **changes: Any) -> Job:
        """Change a pending or failed job: ``command``, ``priority``, ``run_at`` or ``delay``,
        ``max_retries``, ``timeout``. A job claimed meanwhile is not changed
        (``InvalidTransition`` says so)."""
        edited = self.store.edit(job_id, job_changes(changes))
        self._local.wake()
        return edited

    def pause(self) -> bool:
        """Stop every pool of the queue from starting jobs (running ones finish); kept until
        ``resume``, across restarts. Return whether it was running before."""
        return self.store.set_paused(True)

    def resume(self) -> bool:
        """Let pools start jobs again; return whether the queue was paused."""
        resumed = self.store.set_paused(False)
        self._local.wake()
        return resumed

    @property
    def paused(self) -> bool:
        """Whether the queue is paused."""
        return self.store.paused()

    def prune(
        self,
        older_than: float | str | timedelta,
        states: Iterable[State | str] | None = None,
        *,
        dry_run: bool = False,
    ) -> int:
        """Delete finished jobs (of ``states``; default: completed, dead and cancelled) that
        ended more than ``older_than`` ago (seconds, ``"30d"`` or a timedelta), with their
        attempts; return how many (with ``dry_run``: how many would be)."""
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        age = parse_duration(older_than, "older_than")
        chosen = FINISHED if states is None else {_state(state) for state in states}
        try:
            before = self.store.now() - timedelta(seconds=age)
        except OverflowError:
            before = datetime.min.replace(tzinfo=UTC)
        return self.store.prune(before, chosen, dry_run=dry_run)

    def logs(self, job_id: str, attempt: int | None = None) -> str:
        """The output of a job's attempt (the latest by default; while it runs, what it
        printed so far): stdout, then stderr, decoded as UTF-8. Only the last
        ``output_max_bytes`` of each stream are kept."""
        found = self._attempt(job_id, attempt)
        return (found.stdout + found.stderr).decode("utf-8", "replace")

    def follow(self, job_id: str) -> Iterator[Chunk | Attempt]:
        """The output of the job's latest attempt as it comes, as ``Chunk``s, then the ended
        ``Attempt`` (see ``queuectl.follow``)."""
        from queuectl.follow import follow

        self.store.get(job_id)  # an unknown id is an error now, not at the first iteration
        return follow(self.store, job_id)

    def _attempt(self, job_id: str, number: int | None) -> Attempt:
        if number is None:
            latest = self.store.last_attempt(job_id)
            if latest is None:
                raise NotFound(f"job '{job_id}' has not run yet.")
            return latest
        chosen = [a for a in self.attempt_records(job_id) if a.number == number]
        if not chosen:
            raise NotFound(f"job '{job_id}' has no attempt {number}.")
        return chosen[-1]

    def import_copy(self, copy: QueueCopy) -> None:
        """Write a whole queue (its jobs, attempts and configuration, as they are) into this
        queue, which must have no jobs; all or nothing (see ``queuectl.migrate``)."""
        self.store.import_copy(copy)

    def counts(self) -> dict[State, int]:
        """Number of jobs in each state."""
        return self.store.counts()

    def status(self) -> QueueStatus:
        """Counts per state, live worker pools, and whether the queue is paused."""
        return QueueStatus(self.location, self.store.counts(), self.workers(), self.store.paused())

    def metrics(self) -> metrics_model.Metrics:
        """Throughput, runtimes and failure rate over the attempt history."""
        since = self.store.now() - metrics_model.RECENT
        return metrics_model.compute(self.store.attempt_summary(since))

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        """The queue's configuration."""
        return self.store.config()

    def set_config(self, key: str, value: str | float) -> tuple[str, int | float | str]:
        """Validate and store one key (aliases accepted); return (canonical key, value)."""
        name, parsed = config_keys.parse_setting(key, str(value))
        self.store.set_config(name, parsed)
        return name, parsed

    # -- workers ------------------------------------------------------------------------------

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
        self, timeout: float | None = None, *, progress: bool | None = None, poll: float = 0.1
    ) -> bool:
        """Block until no job is pending, failed or processing; False if ``timeout`` passed.

        ``progress`` shows a progress bar of the jobs finished since the call (in a notebook
        a widget, in a terminal on stderr); by default only when someone is watching: in a
        Jupyter kernel or when stderr is a terminal. Jobs scheduled for later are waited for.

        Raises:
            NoWorkers: jobs are unfinished and no pool of this queue is running.
        """
        from queuectl.progress import Progress

        timeout = validate_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        first = self.counts()
        with Progress(sum(first.values()), unfinished(first), progress) as bar:
            next_check = 0.0
            while left := unfinished(counts := self.counts()):
                bar.update(counts)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 2.0
                    if not self.workers():
                        raise NoWorkers(left, "q.start_workers(n)")
                if deadline is not None and time.monotonic() > deadline:
                    return False
                time.sleep(poll)
            bar.update(counts)
        return True

    def wait_or_raise(self, timeout: float | None = None, progress: bool | None = None) -> None:
        """``wait()``, raising ``WaitTimeout`` when the timeout passes first."""
        if not self.wait(timeout, progress=progress):
            left = unfinished(self.counts())
            raise WaitTimeout(f"{left} job(s) still unfinished after {timeout:g} s.")

    def panel(self, interval: float = 1.0) -> QueuePanel:
        """A live ipywidgets panel of this queue (counts, workers, recent jobs, the DLQ)."""
        from queuectl.panel import QueuePanel

        return QueuePanel(self, interval=interval)

    def now(self) -> datetime:
        """The queue's clock."""
        return self.store.now()


def _with_id(job: NewJob) -> NewJob:
    return replace(job, id=generate_id())


def _current_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # it was deleted: the job then runs where its pool runs
        return None


def _placed(job: NewJob, here: str | None) -> NewJob:
    """The job with the directory it was enqueued from, and its ``cwd`` made absolute."""
    cwd = job.cwd
    if cwd is not None and here is not None:
        cwd = os.path.join(here, os.path.expanduser(cwd))
    return replace(job, cwd=cwd, enqueued_from=job.enqueued_from or here)


def _unique(job_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(job_ids))


def _state(value: State | str) -> State:
    return value if isinstance(value, State) else validate_state(value)
