"""Rows of either store turned into model objects, and back (for copying a queue), and the
columns of the ``Table``s the DataFrames are built from.

Both stores select the same columns in the same order; only their time values differ: SQLite
keeps UTC epoch seconds, PostgreSQL ``timestamptz``. Each mapping takes the store's decoder
(``when``), so the column layout and the model mapping live here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from queuectl.model import Attempt, Claim, Fence, Job, Outcome, State, WorkerInfo
from queuectl.model.job import Rule
from queuectl.model.metrics import AttemptSummary

JOB_COLUMNS = (
    "id, command, state, attempts, max_retries, priority, run_at, timeout, created_at, "
    "updated_at, last_error, worker_id, lease_until, attempt_id, cwd, enqueued_from, env, "
    "cancel_requested, job_group, tags, params, after_rule, unmet, cancelled_by"
)
_JOB_WIDTH = JOB_COLUMNS.count(",") + 1
#: the columns a copied job is inserted with (the lease columns stay empty)
JOB_COPY_COLUMNS = (
    "id, command, state, attempts, max_retries, priority, run_at, timeout, created_at, "
    "updated_at, last_error, cwd, enqueued_from, env, job_group, tags, params, after_rule, "
    "unmet, cancelled_by"
)
ATTEMPT_COLUMNS = (
    "job_id, number, worker_id, started_at, finished_at, exit_code, outcome, error, stdout, "
    "stderr, stdout_bytes, stderr_bytes, result"
)
#: the columns of the tables frames are built from (``Table``), as ``table.column``: jobs
#: (``j``) and attempts (``a``); results pair a job with its latest attempt, whose id it keeps
JOB_TABLE = (
    "j.id", "j.command", "j.state", "j.attempts", "j.max_retries", "j.priority", "j.run_at",
    "j.timeout", "j.created_at", "j.updated_at", "j.last_error", "j.worker_id", "j.lease_until",
    "j.cwd", "j.enqueued_from", "j.cancel_requested", "j.job_group", "j.tags",
)  # fmt: skip
ATTEMPT_TABLE = (
    "a.job_id", "a.number", "j.command", "a.outcome", "a.exit_code", "a.started_at",
    "a.finished_at", "a.worker_id", "a.error",
)  # fmt: skip
RESULT_TABLE = (
    "j.id", "j.job_group", "j.state", "j.attempts", "j.params", "a.started_at", "a.finished_at",
    "a.result",
)  # fmt: skip
#: the time columns of those tables, which a ``Table`` holds as epoch seconds
TIMES = frozenset(
    {"run_at", "created_at", "updated_at", "lease_until", "started_at", "finished_at"}
)
WORKER_COLUMNS = "id, host, pid, threads, started_at, heartbeat_at, stop_requested"

Decode = Callable[[Any], datetime]
#: a query's columns by name, each a list of raw values in row order: times as epoch seconds
#: (float), tags, params and results as their JSON text, ``None`` where missing. Frames are
#: built from these a column at a time, without a model object per row.
Table = dict[str, list[Any]]
Encode = Callable[[datetime], Any]


def to_datetime(epoch: float) -> datetime:
    """An aware UTC datetime from epoch seconds (SQLite)."""
    return datetime.fromtimestamp(epoch, UTC)


def to_epoch(moment: datetime) -> float:
    """Epoch seconds from an aware datetime (SQLite)."""
    return moment.timestamp()


def in_utc(moment: datetime) -> datetime:
    """A ``timestamptz`` value in UTC (PostgreSQL hands them over in the session's zone)."""
    return moment.astimezone(UTC)


def _maybe(when: Decode, value: Any) -> datetime | None:
    return None if value is None else when(value)


def to_job(row: Sequence[Any], when: Decode = to_datetime) -> Job:
    """A job from a row of ``JOB_COLUMNS``."""
    return Job(
        id=row[0],
        command=row[1],
        state=State(row[2]),
        attempts=row[3],
        max_retries=row[4],
        priority=row[5],
        run_at=when(row[6]),
        timeout=row[7],
        created_at=when(row[8]),
        updated_at=when(row[9]),
        last_error=row[10],
        worker_id=row[11],
        lease_until=_maybe(when, row[12]),
        cwd=row[14],
        enqueued_from=row[15],
        env=json.loads(row[16]) if row[16] else {},
        cancel_requested=bool(row[17]),
        group=row[18],
        tags=tuple(json.loads(row[19])) if row[19] else (),
        params=json.loads(row[20]) if row[20] else {},
        after_rule=None if row[21] is None else Rule(row[21]),
        unmet=row[22],
        cancelled_by=row[23],
    )


def env_text(env: Mapping[str, str]) -> str | None:
    """A job's variables as the text both stores keep (``None`` when it has none)."""
    return json.dumps(dict(env), sort_keys=True) if env else None


def json_text(value: Mapping[str, Any] | Sequence[Any] | None) -> str | None:
    """Params, tags or a result as the JSON text both stores keep (``None`` when empty);
    params keep their order: it is the order of the columns of ``results``."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False) if value else None


def table_columns(columns: Sequence[str], epoch: Callable[[str], str]) -> str:
    """The select list of a table's ``columns``, each time column read through ``epoch``
    (an SQL expression of the column giving epoch seconds)."""
    return ", ".join(
        f"{epoch(column)} AS {column[2:]}" if column[2:] in TIMES else column for column in columns
    )


def to_table(columns: Sequence[str], found: Sequence[Sequence[Any]]) -> Table:
    """Rows of ``table_columns`` as a ``Table``: each column's values, named without their
    table."""
    values = list(zip(*found, strict=True)) if found else [()] * len(columns)
    return {column[2:]: list(of_column) for column, of_column in zip(columns, values, strict=True)}


_STATES = tuple(State)  # (iterating the enum itself is slow: status reads this per group)


def group_counts_query(table: str, cast: str = "") -> str:
    """A query of one row per group that has jobs: its name, then its jobs per state in
    ``State`` order (each sum ending in ``cast``): a thousand rows for a thousand groups,
    not one per group and state."""
    per_state = ", ".join(
        f"sum(CASE state WHEN '{state.value}' THEN n ELSE 0 END){cast}" for state in State
    )
    return (
        f"SELECT job_group, {per_state} FROM {table} "
        "GROUP BY job_group HAVING sum(n) > 0 ORDER BY job_group"
    )


def to_group_counts(found: Iterable[Sequence[Any]]) -> dict[str, dict[State, int]]:
    """Jobs per state of each group, from rows of ``group_counts_query``."""
    return {row[0]: dict(zip(_STATES, row[1:], strict=True)) for row in found}


#: a running job's columns and its attempt's number (``to_claim``), of ``jobs``
CLAIM_COLUMNS = f"{JOB_COLUMNS}, (SELECT number FROM {{attempts}} WHERE id = attempt_id)"


def to_claim(row: Sequence[Any], when: Decode = to_datetime) -> Claim:
    """A running job, its fence and its attempt's number, from a row of ``JOB_COLUMNS``
    followed by the number."""
    job = to_job(row, when)
    assert job.worker_id is not None, "only processing jobs are claims"
    return Claim(job, Fence(job.id, job.attempts, job.worker_id, row[13]), row[_JOB_WIDTH])


def to_attempt(row: Sequence[Any], when: Decode = to_datetime) -> Attempt:
    """An attempt from a row of ``ATTEMPT_COLUMNS``."""
    return Attempt(
        job_id=row[0],
        number=row[1],
        worker_id=row[2],
        started_at=when(row[3]),
        finished_at=_maybe(when, row[4]),
        exit_code=row[5],
        outcome=None if row[6] is None else Outcome(row[6]),
        error=row[7],
        stdout=bytes(row[8]),
        stderr=bytes(row[9]),
        stdout_bytes=row[10],
        stderr_bytes=row[11],
        result=json.loads(row[12]) if row[12] else None,
    )


def to_worker(row: Sequence[Any], when: Decode = to_datetime) -> WorkerInfo:
    """A worker pool from a row of ``WORKER_COLUMNS``."""
    wid, host, pid, threads, started, beat, stop = row
    return WorkerInfo(wid, host, pid, threads, when(started), when(beat), bool(stop))


#: an aggregate's filter for completed attempts
COMPLETED = f"FILTER (WHERE outcome = '{Outcome.COMPLETED.value}')"


def attempt_totals(runtime: str, since: str, attempts: str = "attempts", more: str = "") -> str:
    """A query of one row over the finished attempts, in one pass: a count per outcome (in
    ``Outcome`` order), the first start, the last finish, the completed ones finished at or
    after ``since``, the mean and longest ``runtime`` (an SQL expression) of those, then the
    columns ``more`` (after a comma)."""
    per_outcome = "".join(f"count(*) FILTER (WHERE outcome = '{o.value}'), " for o in Outcome)
    recent = f"FILTER (WHERE outcome = '{Outcome.COMPLETED.value}' AND finished_at >= {since})"
    return (
        f"SELECT {per_outcome}min(started_at), max(finished_at), count(*) {recent}, "
        f"avg({runtime}) {COMPLETED}, max({runtime}) {COMPLETED}{more} "
        f"FROM {attempts} WHERE finished_at IS NOT NULL"
    )


def to_summary(
    totals: Sequence[Any], p50: float | None, p95: float | None, when: Decode = to_datetime
) -> AttemptSummary:
    """A summary from a row of ``attempt_totals`` (without ``more``) and the percentiles."""
    counts, (first, last, completed_since, mean, longest) = totals[: len(Outcome)], totals[-5:]
    return AttemptSummary(
        {outcome: int(n) for outcome, n in zip(Outcome, counts, strict=True) if n},
        None if first is None else when(first),
        None if last is None else when(last),
        int(completed_since),
        mean,
        p50,
        p95,
        longest,
    )


def job_values(job: Job, encode: Encode = to_epoch) -> tuple[Any, ...]:
    """A copied job as values for ``JOB_COPY_COLUMNS``."""
    return (
        job.id,
        job.command,
        job.state.value,
        job.attempts,
        job.max_retries,
        job.priority,
        encode(job.run_at),
        job.timeout,
        encode(job.created_at),
        encode(job.updated_at),
        job.last_error,
        job.cwd,
        job.enqueued_from,
        env_text(job.env),
        job.group,
        json_text(job.tags),
        json_text(job.params),
        None if job.after_rule is None else job.after_rule.value,
        job.unmet,
        job.cancelled_by,
    )


def attempt_values(attempt: Attempt, encode: Encode = to_epoch) -> tuple[Any, ...]:
    """A copied attempt as values for ``ATTEMPT_COLUMNS``."""
    return (
        attempt.job_id,
        attempt.number,
        attempt.worker_id,
        encode(attempt.started_at),
        None if attempt.finished_at is None else encode(attempt.finished_at),
        attempt.exit_code,
        None if attempt.outcome is None else attempt.outcome.value,
        attempt.error,
        attempt.stdout,
        attempt.stderr,
        attempt.stdout_bytes,
        attempt.stderr_bytes,
        json_text(attempt.result),
    )
