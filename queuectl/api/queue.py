"""``Queue``: enqueue and inspect jobs, read the history, configure the queue; with its
control of jobs (``api.control``) and its worker pools (``api.workers``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from queuectl.api.control import Control
from queuectl.api.sweep import Sweeps
from queuectl.api.workers import Workers
from queuectl.errors import InvalidInput
from queuectl.model import Attempt, Config, Job, JobFilter, NewJob, QueueCopy, State
from queuectl.model import config as config_keys
from queuectl.model import metrics as metrics_model
from queuectl.model.dependencies import Edge, Relatives
from queuectl.model.parse import (
    job_filter,
    new_job,
    validate_limit,
    validate_state,
)
from queuectl.model.status import QueueSnapshot, QueueStatus
from queuectl.store import Store, open_store, redact, resolve_location
from queuectl.worker.inprocess import LocalPools

if TYPE_CHECKING:
    import pandas as pd

    from queuectl.plots import QueuePlots


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


class Queue(Control, Sweeps, Workers):
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
        this process's current directory), ``env`` (variables for the job, on top of the
        worker's environment; this process's own environment is not copied), ``group``,
        ``tags``, ``params``, and ``after`` (ids of jobs it runs after), ``after_group`` and
        ``after_rule`` (``"ok"``: after they all completed, the default; ``"any"``: after they
        all finished).
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

    def jobs(
        self,
        state: State | str | None = None,
        limit: int | None = None,
        *,
        group: str | None = None,
        tag: str | None = None,
    ) -> pd.DataFrame:
        """Jobs as a DataFrame indexed by id, newest first, optionally of one state, group
        or tag."""
        from queuectl.frames import jobs_frame

        return jobs_frame(self.store.job_table(*_listing(state, limit, group, tag)))

    def dlq(
        self, limit: int | None = None, *, group: str | None = None, tag: str | None = None
    ) -> pd.DataFrame:
        """The dead letter queue (jobs that used up their retries) as a DataFrame."""
        return self.jobs(State.DEAD, limit, group=group, tag=tag)

    def attempts(
        self, job_id: str | None = None, *, group: str | None = None, tag: str | None = None
    ) -> pd.DataFrame:
        """The attempt history as a DataFrame: one row per attempt, of one job or of all
        (of one group or tag)."""
        from queuectl.frames import attempts_frame

        return attempts_frame(self.store.attempt_table(job_id, job_filter(group, tag)))

    def results(self, *, group: str | None = None, tag: str | None = None) -> pd.DataFrame:
        """One row per job (of a group or tag): its params as columns, its state, attempts
        and the duration of its latest attempt, then the keys of the JSON object that attempt
        wrote to ``$QUEUECTL_RESULT`` (nested keys joined by "."). Jobs without a result yet
        have missing values, so a running sweep can be analysed already."""
        from queuectl.frames import results_frame

        return results_frame(self.store.result_table(job_filter(group, tag)))

    def job_records(
        self,
        state: State | str | None = None,
        limit: int | None = None,
        *,
        group: str | None = None,
        tag: str | None = None,
        before: str | None = None,
        search: str | None = None,
    ) -> list[Job]:
        """Jobs as ``Job`` objects, newest first, optionally of one state, group or tag.

        One page at a time: ``before`` gives those enqueued before that job (the last of the
        page before), keyset-paged; ``search`` only those whose id or command contains it
        (ASCII letters in either case; no index: it reads jobs until the page is full)."""
        if before is None and not search:
            return self.store.jobs(*_listing(state, limit, group, tag))
        chosen, size, where = _listing(state, limit, group, tag)
        return self.store.job_page(chosen, size, where, before=before, search=search)

    def relatives(self, job_id: str) -> Relatives:
        """The job's parents and children (``after``), with their states."""
        return self.store.relatives(job_id)

    def edges(self, group: str | None = None) -> list[Edge]:
        """Every dependency (or those with the parent or the child in ``group``)."""
        return self.store.edges(job_filter(group).group)

    def graph(self, group: str | None = None) -> pd.DataFrame:
        """The dependencies (of ``group``: parent or child in it) as a DataFrame, one row per
        edge: ``parent``, ``child``, their states (a pruned parent's is missing) and the
        child's ``rule``, children in enqueue order."""
        from queuectl.frames import edges_frame

        return edges_frame(self.edges(group))

    def attempt_records(
        self, job_id: str | None = None, *, group: str | None = None, tag: str | None = None
    ) -> list[Attempt]:
        """Attempts as ``Attempt`` objects (with output tails), in start order."""
        return self.store.attempts(job_id, job_filter(group, tag))

    def import_copy(self, copy: QueueCopy) -> None:
        """Write a whole queue (its jobs, attempts and configuration, as they are) into this
        queue, which must have no jobs; all or nothing (see ``queuectl.migrate``)."""
        self.store.import_copy(copy)

    @property
    def plot(self) -> QueuePlots:
        """Plots of the attempt history: ``q.plot.timeline(group=...)`` (a Gantt chart per
        worker thread, coloured by outcome) and ``q.plot.runtimes(by=...)``; matplotlib,
        the ``plot`` extra. Each returns the matplotlib Axes."""
        from queuectl.plots import QueuePlots

        return QueuePlots(self)

    def counts(self, *, group: str | None = None, tag: str | None = None) -> dict[State, int]:
        """Number of jobs in each state (of a group or tag)."""
        return self.store.counts(job_filter(group, tag))

    def status(self, *, group: str | None = None, tag: str | None = None) -> QueueStatus:
        """Counts per state (of a group or tag; per group too when groups exist), live worker
        pools, and whether the queue is paused."""
        where = job_filter(group, tag)
        return QueueStatus(
            self.location,
            self.store.counts(where),
            self.workers(),
            self.store.paused(),
            groups={} if where else self.store.group_counts(),
            scope=where,
        )

    def snapshot(
        self,
        *,
        group: str | None = None,
        tag: str | None = None,
        recent: int = 10,
        listed: int = 100,
    ) -> QueueSnapshot:
        """The status and the jobs a live view lists beside it, read at one moment (one read
        transaction), so that they agree: the running jobs and the next to run (at most
        ``listed`` of each), the ``recent`` newest jobs and the ``listed`` newest dead ones.
        Its cost does not grow with the queue (kept counts, index reads of at most ``listed``
        rows each), except with a ``tag``, whose jobs are found by reading every job's tags."""
        where = job_filter(group, tag)
        with self.store.consistent():
            now = self.store.now()
            status = self.status(group=group, tag=tag)
            counts = status.counts
            running = (
                self.store.jobs(State.PROCESSING, listed, where) if counts[State.PROCESSING] else []
            )
            waiting = (
                self.store.waiting(listed, where)
                if counts[State.PENDING] or counts[State.FAILED]
                else []
            )
            dead = self.store.jobs(State.DEAD, listed, where) if counts[State.DEAD] else []
            newest = self.store.jobs(None, validate_limit(recent), where)
        running.sort(key=lambda job: (job.updated_at, job.id))  # longest running first
        return QueueSnapshot(status, running, waiting, newest, dead, now)

    def metrics(self, *, group: str | None = None, tag: str | None = None) -> metrics_model.Metrics:
        """Throughput, runtimes and failure rate over the attempt history (of a group or
        tag)."""
        since = self.store.now() - metrics_model.RECENT
        return metrics_model.compute(self.store.attempt_summary(since, job_filter(group, tag)))

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        """The queue's configuration."""
        return self.store.config()

    def set_config(self, key: str, value: str | float) -> tuple[str, int | float | str]:
        """Validate and store one key (aliases accepted); return (canonical key, value)."""
        name, parsed = config_keys.parse_setting(key, str(value))
        self.store.set_config(name, parsed)
        return name, parsed

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


def _listing(
    state: State | str | None, limit: int | None, group: str | None, tag: str | None
) -> tuple[State | None, int | None, JobFilter]:
    """A listing's arguments, validated, as the store takes them."""
    chosen = validate_state(state) if isinstance(state, str) else state
    return chosen, validate_limit(limit), job_filter(group, tag)
