"""Rows of the SQLite store turned into model objects (times: UTC epoch seconds)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from queuectl.model import Attempt, Job, Outcome, State

JOB_COLUMNS = (
    "id, command, state, attempts, max_retries, priority, run_at, timeout, created_at, "
    "updated_at, last_error, worker_id, lease_until, attempt_id"
)
ATTEMPT_COLUMNS = (
    "job_id, number, worker_id, started_at, finished_at, exit_code, outcome, error, stdout, stderr"
)


def to_datetime(epoch: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(epoch, UTC)


def to_job(row: Sequence[Any]) -> Job:
    """A job from a row of ``JOB_COLUMNS``."""
    return Job(
        id=row[0],
        command=row[1],
        state=State(row[2]),
        attempts=row[3],
        max_retries=row[4],
        priority=row[5],
        run_at=to_datetime(row[6]),
        timeout=row[7],
        created_at=to_datetime(row[8]),
        updated_at=to_datetime(row[9]),
        last_error=row[10],
        worker_id=row[11],
        lease_until=None if row[12] is None else to_datetime(row[12]),
    )


def to_attempt(row: Sequence[Any]) -> Attempt:
    """An attempt from a row of ``ATTEMPT_COLUMNS``."""
    return Attempt(
        job_id=row[0],
        number=row[1],
        worker_id=row[2],
        started_at=to_datetime(row[3]),
        finished_at=None if row[4] is None else to_datetime(row[4]),
        exit_code=row[5],
        outcome=None if row[6] is None else Outcome(row[6]),
        error=row[7],
        stdout=bytes(row[8]),
        stderr=bytes(row[9]),
    )
