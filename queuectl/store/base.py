"""The storage port: the only way the worker, the API and the commands reach a queue database.

Methods take and return model objects and plain values; no SQL leaves a store. Time-based
decisions (``run_at``, leases, heartbeats) use the store's own clock (``now()``), so that on a
shared server every host agrees. Every method is safe to call from several threads; a store keeps
one connection per thread.

Wake-ups: an idle worker pool polls ``claim`` every ``poll_interval``; a store that can tell
when other processes make jobs claimable says so through ``watch`` (PostgreSQL: LISTEN/NOTIFY),
so pools react at once and polling is only the backstop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from queuectl.errors import (
    DuplicateJob,
    InvalidInput,
    InvalidTransition,
    NotFound,
    QueuectlError,
)
from queuectl.model import (
    Attempt,
    Claim,
    Config,
    Fence,
    Job,
    JobChanges,
    JobFilter,
    NewJob,
    QueueCopy,
    RunResult,
    State,
    Transition,
    WorkerInfo,
)
from queuectl.model.dependencies import Edge, Relatives
from queuectl.model.job import EVERY_JOB
from queuectl.model.metrics import AttemptSummary
from queuectl.store.rows import Table


@dataclass(frozen=True)
class AttemptHistory:
    """What ``Store.attempt_history`` reads (the dashboard's charts and metrics): the newest
    attempts only, so that its cost does not grow with the history."""

    #: attempts of each outcome (value) that finished from ``since`` on
    by_outcome: dict[str, int]
    #: the same per bucket (its index from ``since``) and outcome
    recent: dict[int, dict[str, int]]
    #: the completed attempts among the ``newest`` per runtime bucket: one per bound (runtime
    #: <= bound, > the bound before), then those longer than the last bound
    runtimes: list[int]
    #: their runtimes in all, seconds
    runtime_sum: float


def _watch_nothing() -> None:
    """What ``Store.watch`` returns when a store has nothing to watch."""


class Store(ABC):
    """A queue database. Implementations: ``SqliteStore`` and ``PostgresStore``."""

    #: where the queue lives, safe to print (never contains a password)
    location: str
    #: where the queue lives, as jobs are told in ``QUEUECTL_DB``: usable, with no password
    location_for_jobs: str

    @abstractmethod
    def close(self) -> None:
        """Close this thread's connection (other threads close theirs when they end)."""

    def release(self) -> None:  # noqa: B027 - optional hook: stores without per-thread state
        """Give back the calling thread's connection (a worker thread calls it as it ends)."""

    @abstractmethod
    def now(self) -> datetime:
        """The store's clock (UTC), the one all run_at and lease decisions use."""

    def hold_writes(self) -> AbstractContextManager[None]:
        """A block during which no write transaction of this process is open or starts.

        A pool about to stop itself (Ctrl-Z) holds it, so that it never sits stopped inside
        a transaction that locks out every other process. The default holds nothing: a store
        whose transactions do not lock others out (PostgreSQL locks only the rows a
        transaction touches, and other pools skip those) needs nothing held.
        """
        return nullcontext()

    def watch(self, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify`` whenever jobs may have become claimable; return a function that stops
        the watching (and waits for a thread of it, if any, to end).

        A worker pool calls it once as it starts, with the function that wakes its idle
        threads, and calls the returned function as it stops. ``notify`` may be called from
        any thread, must return quickly, and may be called when nothing changed. It is a hint:
        a change can go unreported (say, while a connection is down), so pools keep polling.
        The watching runs in the background and never raises; problems go to the log.

        The default watches nothing: pools then rely on polling alone.
        """
        return _watch_nothing

    # -- jobs ---------------------------------------------------------------------------------

    @abstractmethod
    def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert jobs as ``pending`` in one transaction; all or none.

        Every ``NewJob`` must carry an id. Fields left ``None`` take the queue's configured
        defaults at this moment. A job's ``delay`` counts from the store's clock (``now()``);
        without ``run_at`` or ``delay`` it may run at once. Durable once it returns.

        Raises:
            DuplicateJob: an id exists already (nothing is inserted).
        """

    @abstractmethod
    def claim(self, worker_id: str, lease_seconds: float) -> Claim | None:
        """Atomically claim the next claimable job, or return ``None``.

        Claimable: ``pending`` or ``failed`` with ``run_at <= now``, taken by priority (higher
        first), then run_at, then enqueue order. The job becomes ``processing`` with
        ``attempts + 1`` and a lease until ``now + lease_seconds``; an attempt row is started.
        No two callers, in any thread, process or host, ever claim the same attempt.
        """

    @abstractmethod
    def renew(self, fences: Sequence[Fence], lease_seconds: float) -> set[int]:
        """Extend the leases of running attempts; return the attempt ids still held."""

    @abstractmethod
    def finish(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        *,
        only_if_expired: bool = False,
    ) -> bool:
        """Record an attempt's result and move its job, if the fence still holds.

        The job must still be ``processing`` under exactly this fence (and, with
        ``only_if_expired``, past its lease). Otherwise nothing changes and ``False`` is
        returned: a worker that lost its lease cannot overwrite the job.
        """

    @abstractmethod
    def finish_and_claim(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        worker_id: str,
        lease_seconds: float,
    ) -> tuple[bool, Claim | None]:
        """``finish`` this attempt and ``claim`` the worker's next job, in one transaction;
        return both results.

        A busy pool thread calls this once per job: one commit instead of two. The claim is
        made whether or not the fence held, and may skip the job being finished even if it
        is due again at once.
        """

    @abstractmethod
    def expired(self) -> list[Claim]:
        """Running attempts whose lease has passed: their worker is gone or stuck."""

    @abstractmethod
    def consistent(self) -> AbstractContextManager[None]:
        """A block whose reads (in this thread) all see one state of the queue: counts and
        the jobs listed beside them agree. Read only; blocks may nest."""

    @abstractmethod
    def get(self, job_id: str) -> Job:
        """One job. Raises ``NotFound``."""

    @abstractmethod
    def jobs(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> list[Job]:
        """Jobs, newest first, optionally of one state, those ``where`` takes."""

    @abstractmethod
    def job_page(
        self,
        state: State | None,
        limit: int | None,
        where: JobFilter = EVERY_JOB,
        *,
        before: str | None = None,
        search: str | None = None,
    ) -> list[Job]:
        """``jobs``, one page: those enqueued before the job ``before`` (the last one of the
        page before; ``NotFound`` if there is no such job) and, with ``search``, only those
        whose id or command contains it, ignoring the case of ASCII letters.

        Keyset paging: a page costs the same wherever it is. A search has no index: it reads
        jobs newest first until it has ``limit`` of them (or none are left).
        """

    @abstractmethod
    def attempt_history(
        self,
        since: datetime,
        bucket: float,
        bounds: Sequence[float],
        *,
        started: datetime,
        newest: int,
    ) -> AttemptHistory:
        """Recent attempts for charts and metrics, in one read whose cost does not grow with
        the history: per ``bucket`` seconds from ``since`` on, how many finished of each
        outcome, among the attempts that started at or after ``started``; and the runtimes of
        the completed attempts among the ``newest`` attempts, counted into ``bounds``
        (ascending upper bounds in seconds).

        Both are read by the attempts' primary key, newest first: ids grow with start times,
        so the attempts started since ``started`` are the ids from the first of them on
        (``first_started``: a binary search), a range of the key like the newest ones."""

    @abstractmethod
    def waiting(self, limit: int, where: JobFilter = EVERY_JOB) -> list[Job]:
        """The first ``limit`` pending and failed jobs in the order pools take them (higher
        priority, then sooner due, then enqueue order), those not yet due included."""

    @abstractmethod
    def attempts(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> list[Attempt]:
        """Attempts in the order they started: of one job (``NotFound`` if none), or of the
        jobs ``where`` takes."""

    @abstractmethod
    def job_table(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> Table:
        """``jobs`` as one ``Table`` of ``rows.JOB_TABLE`` (for DataFrames: no object per
        row)."""

    @abstractmethod
    def attempt_table(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> Table:
        """``attempts`` as one ``Table`` of ``rows.ATTEMPT_TABLE``, each with its job's
        command."""

    @abstractmethod
    def relatives(self, job_id: str) -> Relatives:
        """The job's parents and children with their states. Raises ``NotFound``."""

    @abstractmethod
    def edges(self, group: str | None = None) -> list[Edge]:
        """Every dependency, or those whose parent or child is of ``group``."""

    @abstractmethod
    def counts(self, where: JobFilter = EVERY_JOB) -> dict[State, int]:
        """Number of jobs in each state (every state present, zero if empty), of the jobs
        ``where`` takes. Without a tag it reads counts kept by the store, not the jobs."""

    @abstractmethod
    def group_counts(self) -> dict[str, dict[State, int]]:
        """Jobs per state of each group that has jobs, by group name (kept counts)."""

    @abstractmethod
    def result_table(self, where: JobFilter = EVERY_JOB) -> Table:
        """The jobs ``where`` takes, in enqueue order, each with its params and its latest
        attempt's times and result: a ``Table`` of ``rows.RESULT_TABLE``."""

    @abstractmethod
    def retry(self, job_ids: Sequence[str], states: Collection[State] = (State.DEAD,)) -> list[Job]:
        """Move finished jobs (in ``states``: dead by default) back to ``pending`` with
        ``attempts = 0``, due at once, and any cancel request cleared; all or none.

        Their attempt history stays. Raises ``NotFound`` for an unknown id and
        ``InvalidTransition`` for a job in another state.
        """

    @abstractmethod
    def retry_where(self, states: Collection[State], where: JobFilter = EVERY_JOB) -> list[Job]:
        """Move every job in ``states`` (finished ones) that ``where`` takes back to
        ``pending`` (see ``retry``), in one transaction."""

    def retry_all_dead(self) -> list[Job]:
        """Move every dead job back to ``pending`` (see ``retry``)."""
        return self.retry_where({State.DEAD})

    # -- control ------------------------------------------------------------------------------

    @abstractmethod
    def cancel(
        self,
        job_ids: Sequence[str] | None,
        where: JobFilter = EVERY_JOB,
        *,
        running: bool = False,
    ) -> dict[str, State]:
        """Cancel jobs, all or none; ``None``: every pending or failed job that ``where``
        takes, and with ``running`` its processing ones too (finished ones are left).

        A pending or failed job becomes ``cancelled`` (``last_error``: cancelled) at once. A
        processing job gets a cancel request: the pool running it stops it (see
        ``cancel_requests``), and whatever run ends then ends the job as ``cancelled`` unless
        it completed (its ``last_error`` is the attempt's reason, e.g. "cancelled by
        request", or the failure that came first). Pools are told at once where the store can
        (``watch``). Returns each job's state after the call: ``CANCELLED``, or
        ``PROCESSING`` for a request.

        Raises:
            NotFound: an id is unknown (nothing changes).
            InvalidTransition: a job is finished already (nothing changes).
        """

    @abstractmethod
    def bury(self, job_ids: Sequence[str]) -> list[Job]:
        """Move pending or failed jobs straight to ``dead`` (the DLQ), all or none; their
        ``last_error`` says they were moved. Raises ``NotFound``, ``InvalidTransition``."""

    @abstractmethod
    def edit(self, job_id: str, changes: JobChanges) -> Job:
        """Change a pending or failed job, in one statement that checks its state (a job
        claimed meanwhile is left as it is); a ``delay`` counts from the store's clock.

        Raises:
            NotFound: no such job.
            InvalidTransition: the job is processing or finished (it was not changed).
        """

    @abstractmethod
    def set_paused(self, paused: bool) -> bool:
        """Pause (no pool claims a job; running ones finish) or resume the queue; return
        whether that changed anything. Durable; pools are told at once where the store can."""

    @abstractmethod
    def paused(self) -> bool:
        """Whether the queue is paused."""

    @abstractmethod
    def prune(
        self,
        before: datetime,
        states: Collection[State],
        *,
        limit: int | None = None,
        dry_run: bool = False,
        skip_if_busy: bool = False,
    ) -> int:
        """Delete jobs in ``states`` (finished ones only) last updated before ``before``, with
        their attempts; return how many were deleted (or, ``dry_run``, would be).

        ``limit``: at most that many, oldest first, in one transaction. ``skip_if_busy``:
        return 0 at once when another process is pruning (a pool pruning on its own).

        Raises:
            InvalidInput: ``states`` holds an unfinished state.
        """

    @abstractmethod
    def cancel_requests(self, fences: Sequence[Fence]) -> set[int]:
        """The attempt ids among ``fences`` whose job has a cancel request (a read)."""

    @abstractmethod
    def record_output(self, fence: Fence, result: RunResult) -> bool:
        """Store a running attempt's output so far (tails and byte counts of ``result``);
        False when the fence no longer holds (nothing is written then)."""

    @abstractmethod
    def last_attempt(self, job_id: str) -> Attempt | None:
        """The job's latest attempt, running or not (``None``: never run; ``NotFound``)."""

    @abstractmethod
    def attempt_summary(self, since: datetime, where: JobFilter = EVERY_JOB) -> AttemptSummary:
        """Counts, time span and runtime statistics of the finished attempts (of the jobs
        ``where`` takes), for metrics (``since``: count the completed attempts that finished
        from then on)."""

    @abstractmethod
    def import_copy(self, copy: QueueCopy) -> None:
        """Insert a whole queue copied from another store, in one transaction; all or none.

        Jobs keep their state, attempt count, times and last error, and their enqueue order is
        the order of ``copy.jobs``; attempts keep their order and output. The copy's
        configuration replaces this queue's. Pools are not copied.

        Raises:
            InvalidInput: this queue has jobs already, or a copied job is processing (nothing
                is written either way).
        """

    # -- configuration ------------------------------------------------------------------------

    @abstractmethod
    def config(self) -> Config:
        """The queue's configuration (defaults for keys never set)."""

    @abstractmethod
    def set_config(self, name: str, value: float | str) -> None:
        """Store one validated canonical key (as ``str(value)``)."""

    # -- workers ------------------------------------------------------------------------------

    @abstractmethod
    def register_worker(self, worker_id: str, host: str, pid: int, threads: int) -> None:
        """Record a pool as live."""

    @abstractmethod
    def heartbeat(self, worker_id: str) -> bool | None:
        """Mark a pool as alive; return True when a stop was requested for it.

        ``None`` means the pool has no row (it was pruned as silent): it should register again.
        """

    @abstractmethod
    def stop_requested(self, worker_id: str) -> bool | None:
        """Whether a stop was requested for a pool (a read); ``None`` if it has no row."""

    @abstractmethod
    def deregister_worker(self, worker_id: str) -> None:
        """Remove a pool's row when it exits."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Registered pools, oldest first."""

    @abstractmethod
    def request_stop(self, worker_ids: Sequence[str] | None = None) -> int:
        """Ask pools (all when ``None``) to stop gracefully; return how many were asked."""

    @abstractmethod
    def prune_workers(self, silent_for: float) -> list[str]:
        """Remove pools that have not sent a heartbeat for ``silent_for`` seconds.

        Writes only when there is such a pool.
        """


def check_import_target(copy: QueueCopy, jobs_present: int, location: str) -> None:
    """What both stores check before ``import_copy`` writes anything (see there)."""
    copy.check_movable()
    if jobs_present:
        raise InvalidInput(
            f"the queue {location} has {jobs_present} job(s) already; copy only into an "
            "empty queue (a new database, or a new file name)."
        )


def check_retryable(
    job_ids: Sequence[str], states: dict[str, str], allowed: Collection[State] = (State.DEAD,)
) -> None:
    """What ``retry`` checks, given the states of those of ``job_ids`` that exist."""
    if any(state.active for state in allowed):  # a running job's fence must never be reset
        raise ValueError("only finished jobs can be retried")
    if set(allowed) == {State.DEAD}:
        check_states(job_ids, states, allowed, "not dead: only jobs in the DLQ can be retried")
    else:
        check_states(job_ids, states, allowed, "not finished: only finished jobs can be rerun")


def check_states(
    job_ids: Sequence[str], states: dict[str, str], allowed: Collection[State], why: str
) -> None:
    """Raise ``NotFound`` naming every id missing from ``states`` (the states of the jobs
    that exist), or ``InvalidTransition`` ("job 'x' is <state>, <why>.") for one in another
    state."""
    missing = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in states]
    if len(missing) == 1:
        raise job_not_found(missing[0])
    if missing:
        shown = ", ".join(f"'{job_id}'" for job_id in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NotFound(f"no jobs with ids {shown}{more}: nothing was changed.")
    for job_id in job_ids:
        if states[job_id] not in allowed:
            raise InvalidTransition(f"job '{job_id}' is {states[job_id]}, {why}.")


def not_editable(job_id: str, state: str | None) -> QueuectlError:
    """Why ``edit`` changed nothing, given the job's state found after its update matched no
    row (``None``: there is no such job)."""
    if state is None:
        return job_not_found(job_id)
    if state == State.PROCESSING:
        return InvalidTransition(
            f"job '{job_id}' is processing (claimed meanwhile): it was not changed."
        )
    return InvalidTransition(
        f"job '{job_id}' is {state}: only blocked, pending or failed jobs can be edited."
    )


def in_order(job_ids: Sequence[str], jobs: list[Job]) -> list[Job]:
    """``jobs`` in the order their ids were given (each once): what ``retry`` and ``bury``
    return, whatever order the database found them in."""
    by_id = {job.id: job for job in jobs}
    return [by_id[job_id] for job_id in dict.fromkeys(job_ids)]


def check_prunable(states: Collection[State]) -> None:
    """Refuse to prune unfinished states."""
    active = sorted(state.value for state in states if state.active)
    if active:
        raise InvalidInput(
            "only finished jobs can be pruned (completed, dead, cancelled), "
            f"not {', '.join(active)}."
        )


#: why each finished state cannot be cancelled
NOT_CANCELLABLE = "so there is nothing to cancel (`retry` runs it again)"
#: why each state but pending and failed cannot be moved to the DLQ
NOT_BURIABLE = "not waiting: only blocked, pending or failed jobs can be moved to the DLQ"
#: the ``last_error`` of jobs cancelled before they ran again, or moved to the DLQ by hand
CANCELLED_ERROR = "cancelled"
BURIED_ERROR = "moved to the DLQ by request"
#: the ``config`` row of a paused queue (``Config`` ignores it), and its value
PAUSED_KEY = "paused"
PAUSED_VALUE = "true"


def search_pattern(search: str) -> str:
    """A LIKE pattern (escape character ``\\``) for text that contains ``search``."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def runtime_bucket(runtime: str, bounds: Sequence[float]) -> str:
    """An SQL expression: the index of the first of ``bounds`` that ``runtime`` (an SQL
    expression) does not exceed, else ``len(bounds)``."""
    cases = "".join(f" WHEN {runtime} <= {float(b)!r} THEN {i}" for i, b in enumerate(bounds))
    return f"CASE{cases} ELSE {len(bounds)} END"


def first_started(
    first_from: Callable[[int], tuple[int, float] | None], top: int, since: float
) -> int:
    """The id from which attempts started at or after ``since`` (epoch seconds); ``top + 1``
    when none did. ``top`` is the highest id, ``first_from(n)`` the id and start of the first
    attempt whose id is ``n`` or more (None: none). Ids grow with start times (an attempt is
    numbered when a pool claims its job), so a binary search over the primary key finds it in
    about 20 reads among a million attempts, and in one when the newest started before."""
    newest = first_from(top)
    if newest is None or newest[1] < since:
        return top + 1
    low, high = 0, top
    while low < high:
        middle = (low + high) // 2
        found = first_from(middle)
        if found is None or found[1] >= since:
            high = middle
        else:
            low = found[0] + 1
    return low


def to_history(
    outcomes: Sequence[tuple[int | None, str, int]],
    runtimes: Sequence[tuple[int, int, float]],
    bounds: Sequence[float],
) -> AttemptHistory:
    """An ``AttemptHistory`` from rows (bucket or None, outcome, count) and (runtime bucket,
    count, sum of runtimes)."""
    by_outcome: dict[str, int] = {}
    recent: dict[int, dict[str, int]] = {}
    for bucket, outcome, n in outcomes:
        by_outcome[outcome] = by_outcome.get(outcome, 0) + int(n)
        if bucket is not None:
            recent.setdefault(int(bucket), {})[outcome] = int(n)
    counts = [0] * (len(bounds) + 1)
    for index, n, _ in runtimes:
        counts[int(index)] = int(n)
    return AttemptHistory(by_outcome, recent, counts, float(sum(t for *_, t in runtimes)))


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"no job with id '{job_id}'.")


def duplicate_job(job_id: str) -> DuplicateJob:
    return DuplicateJob(f"a job with id '{job_id}' exists already; choose another id.")
