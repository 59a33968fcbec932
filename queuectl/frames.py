"""Records to pandas DataFrames: the one place that builds them (and imports pandas).

Every frame has fixed columns and dtypes, cast explicitly so they do not depend on the pandas
version (pandas 3 infers ``str`` and microsecond datetimes where pandas 2 did not) and so an
empty result has the same columns and dtypes as a full one:

- ``state`` is an ordered Categorical in lifecycle order, ``outcome`` a Categorical;
- integer columns are nullable ``Int64`` (a running attempt's exit code is ``<NA>``);
- every timestamp is ``datetime64[us, UTC]`` (microseconds reach any year a job may name);
  durations and timeouts are float seconds;
- text columns (``command``, ``last_error``, ...) are ``string``.

Job frames are indexed by job ``id``; the attempt history has one row per attempt, in start
order, with ``job_id`` and ``attempt`` columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from queuectl.model import Attempt, Job, Outcome, State
from queuectl.model.metrics import Metrics

if TYPE_CHECKING:
    import pandas as pd

TIMESTAMP: Final = "datetime64[us, UTC]"

JOB_DTYPES: dict[str, str] = {
    "command": "string",
    "state": "state",
    "attempts": "Int64",
    "max_retries": "Int64",
    "priority": "Int64",
    "run_at": TIMESTAMP,
    "timeout": "float64",
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "last_error": "string",
    "worker_id": "string",
    "lease_until": TIMESTAMP,
    "cwd": "string",
    "enqueued_from": "string",
    "cancel_requested": "boolean",
}

ATTEMPT_DTYPES: dict[str, str] = {
    "job_id": "string",
    "attempt": "Int64",
    "command": "string",
    "outcome": "outcome",
    "exit_code": "Int64",
    "started_at": TIMESTAMP,
    "finished_at": TIMESTAMP,
    "duration": "float64",
    "worker_id": "string",
    "error": "string",
}

METRIC_DTYPES: dict[str, str] = {
    "attempts": "Int64",
    **{outcome.value: "Int64" for outcome in Outcome},
    "failure_rate": "float64",
    "runtime_mean": "float64",
    "runtime_p50": "float64",
    "runtime_p95": "float64",
    "runtime_max": "float64",
    "throughput_per_minute": "float64",
    "completed_last_minute": "Int64",
}


def jobs_frame(jobs: Sequence[Job]) -> pd.DataFrame:
    """Jobs indexed by ``id``, in the order given."""
    columns = {name: [getattr(job, name) for job in jobs] for name in JOB_DTYPES}
    return _frame(columns, JOB_DTYPES, index=[job.id for job in jobs], index_name="id")


def attempts_frame(attempts: Sequence[Attempt], commands: Mapping[str, str]) -> pd.DataFrame:
    """The attempt history, one row per attempt; ``commands`` maps job ids to commands."""
    named_alike = [name for name in ATTEMPT_DTYPES if name not in ("attempt", "command")]
    columns = {name: [getattr(a, name) for a in attempts] for name in named_alike}
    columns["attempt"] = [a.number for a in attempts]
    columns["command"] = [commands.get(a.job_id) for a in attempts]
    return _frame(columns, ATTEMPT_DTYPES)


def metrics_frame(metrics: Metrics, location: str) -> pd.DataFrame:
    """The queue's metrics as one row indexed by the queue's location; times in seconds."""
    row: dict[str, Any] = {
        "attempts": metrics.attempts,
        **metrics.by_outcome,
        "failure_rate": metrics.failure_rate,
        "runtime_mean": metrics.runtime_mean,
        "runtime_p50": metrics.runtime_p50,
        "runtime_p95": metrics.runtime_p95,
        "runtime_max": metrics.runtime_max,
        "throughput_per_minute": metrics.throughput_per_minute,
        "completed_last_minute": metrics.completed_last_minute,
    }
    return _frame({k: [v] for k, v in row.items()}, METRIC_DTYPES, [location], "queue")


def state_dtype() -> pd.CategoricalDtype:
    """Job states as an ordered Categorical, in lifecycle order."""
    import pandas as pd

    return pd.CategoricalDtype([s.value for s in State], ordered=True)


def outcome_dtype() -> pd.CategoricalDtype:
    """Attempt outcomes as a Categorical."""
    import pandas as pd

    return pd.CategoricalDtype([o.value for o in Outcome])


_CATEGORIES: dict[str, Callable[[], pd.CategoricalDtype]] = {
    "state": state_dtype,
    "outcome": outcome_dtype,
}


def _frame(
    columns: Mapping[str, list[Any]],
    dtypes: Mapping[str, str],
    index: Sequence[str] | None = None,
    index_name: str | None = None,
) -> pd.DataFrame:
    import pandas as pd

    typed: dict[str, Any] = {}
    for column, dtype in dtypes.items():
        values = columns[column]
        if dtype == TIMESTAMP:
            typed[column] = _timestamps(values)
        else:
            resolved: Any = _CATEGORIES[dtype]() if dtype in _CATEGORIES else dtype
            typed[column] = pd.Series(values, dtype="object").astype(resolved)
    frame = pd.DataFrame(typed, columns=list(dtypes))
    if index is not None:
        frame.index = pd.Index(list(index), dtype="string", name=index_name)
    return frame


def _timestamps(values: list[datetime | None]) -> pd.Series:
    """Aware datetimes to ``datetime64[us, UTC]``, through epoch microseconds, so that neither
    pandas 2 (nanoseconds, up to 2262) nor pandas 3 (inferred units) picks another unit."""
    import numpy as np
    import pandas as pd

    micros = np.fromiter((_micros(v) for v in values), dtype=np.int64, count=len(values))
    return pd.Series(micros.view("datetime64[us]")).dt.tz_localize("UTC").astype(TIMESTAMP)


_NAT = -(2**63)  # numpy's NaT as an int64


def _micros(moment: datetime | None) -> int:
    if moment is None:
        return _NAT
    if moment.tzinfo is None:
        raise ValueError("naive datetime in a record: the store must return UTC times")
    return round(moment.timestamp() * 1_000_000)
