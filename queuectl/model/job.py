"""Jobs, attempts and the values that move between the worker and the store. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

#: a parameter's value: what a JSON object of scalars holds (no null: a parameter has a value)
Scalar: TypeAlias = str | int | float | bool


class State(StrEnum):
    """Where a job is in its life, in lifecycle order."""

    BLOCKED = "blocked"  #: waiting for its parents (``after``) to finish
    PENDING = "pending"  #: waiting for its run_at and a free worker
    PROCESSING = "processing"  #: claimed by a worker, under a lease
    FAILED = "failed"  #: the last attempt failed; retried at run_at
    COMPLETED = "completed"  #: an attempt exited 0
    DEAD = "dead"  #: out of retries: the dead letter queue
    CANCELLED = "cancelled"  #: stopped by a cancel request; never retried on its own

    @property
    def active(self) -> bool:
        """True until the job is finished: blocked, pending, failed (awaiting a retry) or
        processing."""
        return self not in FINISHED


#: each state by its name, for reading many rows
STATES: dict[str, State] = {state.value: state for state in State}
#: the states a job ends in (``retry`` starts it again)
FINISHED = frozenset({State.COMPLETED, State.DEAD, State.CANCELLED})
#: the states of a job that waits (for a worker, or for its parents): it can be cancelled,
#: edited or moved to the DLQ
WAITING = frozenset({State.BLOCKED, State.PENDING, State.FAILED})


class Rule(StrEnum):
    """When a parent lets its dependents run (see ``model.dependencies``)."""

    OK = "ok"  #: it completed; dead or cancelled cancels the dependents
    ANY = "any"  #: it finished, whatever its outcome


def unfinished(counts: Mapping[State, int]) -> int:
    """How many jobs of ``counts`` (jobs per state) are still active."""
    return sum(n for state, n in counts.items() if state.active)


class Outcome(StrEnum):
    """How one attempt ended."""

    COMPLETED = "completed"  #: the command exited 0
    FAILED = "failed"  #: non-zero exit, killed by a signal, or could not be started
    TIMEOUT = "timeout"  #: killed because it ran past its timeout
    LOST = "lost"  #: its worker stopped renewing the lease (killed, frozen, host down)
    CANCELLED = "cancelled"  #: stopped because someone cancelled the job


@dataclass(frozen=True)
class NewJob:
    """A validated request to enqueue one job. ``None`` fields take the queue's defaults.

    ``run_at`` or ``delay`` (seconds), not both: the store adds a delay to its own clock, so a
    job runs that long after it was enqueued, whatever the enqueuing host's clock says.
    """

    command: str
    id: str | None = None
    max_retries: int | None = None
    priority: int = 0
    run_at: datetime | None = None
    timeout: float | None = None
    delay: float | None = None
    #: the directory to run in, as the user gave it (``--cwd``)
    cwd: str | None = None
    #: the directory the job was enqueued from (its default directory)
    enqueued_from: str | None = None
    #: variables set for the job on top of the pool's environment
    env: Mapping[str, str] = field(default_factory=dict)
    #: the group it belongs to (a sweep, a batch), if any
    group: str | None = None
    tags: tuple[str, ...] = ()
    #: its parameters: in its environment as ``QUEUECTL_PARAM_<NAME>``, columns of ``results``
    params: Mapping[str, Scalar] = field(default_factory=dict)
    #: the jobs it waits for (ids), and every job of ``after_group`` as it is at enqueue time
    after: tuple[str, ...] = ()
    after_group: str | None = None
    after_rule: Rule = Rule.OK


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing or a bulk action takes: those of ``group`` carrying ``tag``
    (``None``: any). The empty filter takes every job."""

    group: str | None = None
    tag: str | None = None

    def __bool__(self) -> bool:
        return self.group is not None or self.tag is not None

    def matches(self, job: Job) -> bool:
        """Whether ``job`` passes (the in-memory form of the stores' queries)."""
        return (self.group is None or job.group == self.group) and (
            self.tag is None or self.tag in job.tags
        )


#: the filter that takes every job
EVERY_JOB = JobFilter()


@dataclass(frozen=True)
class JobChanges:
    """A validated ``edit`` of a waiting job: the fields to change (``None``: keep).

    ``run_at`` or ``delay`` (from the store's clock), not both.
    """

    command: str | None = None
    max_retries: int | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: float | None = None
    timeout: float | None = None


class Directory(StrEnum):
    """Where a job runs that was given no ``--cwd`` (config key ``job_directory``)."""

    ENQUEUER = "enqueuer"  #: the directory it was enqueued from
    POOL = "pool"  #: the worker pool's own directory (hosts that do not share paths)


@dataclass(frozen=True)
class Job:
    """A job as stored. Timestamps are timezone-aware UTC."""

    id: str
    command: str
    state: State
    #: attempts since it was enqueued or last retried: the retry budget's count, which a
    #: retry resets (``Attempt.number`` keeps counting over the whole history)
    attempts: int
    max_retries: int
    priority: int
    run_at: datetime
    timeout: float  #: seconds; 0 = no timeout
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    worker_id: str | None = None
    lease_until: datetime | None = None
    cwd: str | None = None
    enqueued_from: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: someone asked to cancel it while it ran; its pool stops it
    cancel_requested: bool = False
    group: str | None = None
    tags: tuple[str, ...] = ()
    params: Mapping[str, Scalar] = field(default_factory=dict)
    #: the rule of a job with parents (``None``: it has none)
    after_rule: Rule | None = None
    #: parents that have not yet let a ``blocked`` job go
    unmet: int = 0
    #: the parent whose end cancelled it
    cancelled_by: str | None = None

    def directory(self, default: Directory) -> str | None:
        """Where to run it: ``--cwd``, else (by ``default``) where it was enqueued from or
        ``None``, the pool's directory. Jobs from before directories were recorded have none."""
        if self.cwd is not None:
            return self.cwd
        return self.enqueued_from if default is Directory.ENQUEUER else None


@dataclass(frozen=True)
class Attempt:
    """One execution of a job. ``outcome`` is ``None`` while it runs."""

    job_id: str
    #: 1, 2, ... over the job's whole history: a retry from the DLQ does not start again at 1
    number: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    outcome: Outcome | None
    error: str | None
    stdout: bytes
    stderr: bytes
    #: bytes written to each stream in all (the tails above keep the last ones); ``None``
    #: for attempts from before these were counted
    stdout_bytes: int | None = None
    stderr_bytes: int | None = None
    #: the JSON object the command wrote to ``$QUEUECTL_RESULT``, if any
    result: Mapping[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, ``None`` while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Fence:
    """What a worker holds while it runs a job; every write about the run must match all of it.

    ``attempt_id`` is unique across the whole history, so a fence stays unique even after a
    ``dlq retry`` restarts the attempt numbers of a job.
    """

    job_id: str
    attempt: int
    worker_id: str
    attempt_id: int


@dataclass(frozen=True)
class Claim:
    """A job a worker has claimed, with the fence for recording its result."""

    job: Job
    fence: Fence
    #: the attempt's number in the job's whole history (``Attempt.number``; the fence holds
    #: the retry budget's count instead)
    number: int


@dataclass(frozen=True)
class RunResult:
    """What running a command produced, before the queue decides what follows."""

    outcome: Outcome
    exit_code: int | None
    error: str | None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_bytes: int | None = None  #: bytes written to stdout in all (the tail is the end)
    stderr_bytes: int | None = None
    result: Mapping[str, Any] | None = None  #: what the command wrote to ``$QUEUECTL_RESULT``


@dataclass(frozen=True)
class Transition:
    """The job's next state after an attempt; the store applies it with its own clock."""

    state: State
    retry_delay: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker pool."""

    id: str
    host: str
    pid: int
    threads: int
    started_at: datetime
    heartbeat_at: datetime
    stop_requested: bool = False
