"""Queue metrics from a summary of the attempt history. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from queuectl.model.job import Outcome

#: how far back ``completed_last_minute`` looks
RECENT = timedelta(minutes=1)


@dataclass(frozen=True)
class AttemptSummary:
    """The finished attempts of a queue as its store sums them up, in the database as far as it
    can (SQLite has no percentiles: its store sorts the completed runtimes itself).

    ``first_start`` and ``last_finish`` span every finished attempt; ``completed_since`` counts
    the completed ones that finished at or after the time the store was asked about. Runtimes
    are in seconds, of completed attempts only; the percentiles interpolate linearly between
    the closest ranks (numpy's and pandas' default).
    """

    by_outcome: dict[Outcome, int]
    first_start: datetime | None
    last_finish: datetime | None
    completed_since: int
    runtime_mean: float | None
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_max: float | None


@dataclass(frozen=True)
class Metrics:
    """Throughput, runtimes and failure rate of the finished attempts of a queue.

    Runtimes are those of completed attempts. ``failure_rate`` is the share of finished
    attempts that failed, timed out or were lost. ``throughput_per_minute`` counts completed
    attempts over the span from the first start to the last finish; ``completed_last_minute``
    those that finished in the minute before now.
    """

    attempts: int
    by_outcome: dict[str, int]
    failure_rate: float | None
    runtime_mean: float | None
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_max: float | None
    throughput_per_minute: float | None
    completed_last_minute: int


def compute(summary: AttemptSummary) -> Metrics:
    """``Metrics`` from the store's summary (asked for with ``since = now - RECENT``)."""
    counts = {outcome.value: summary.by_outcome.get(outcome, 0) for outcome in Outcome}
    attempts = sum(counts.values())
    completed = counts[Outcome.COMPLETED.value]
    # A cancelled run is the user's decision, not a failure of the job.
    judged = attempts - counts[Outcome.CANCELLED.value]
    throughput = None
    if completed and summary.first_start is not None and summary.last_finish is not None:
        span = (summary.last_finish - summary.first_start).total_seconds()
        throughput = completed * 60 / span if span > 0 else None
    return Metrics(
        attempts=attempts,
        by_outcome=counts,
        failure_rate=(judged - completed) / judged if judged else None,
        runtime_mean=summary.runtime_mean,
        runtime_p50=summary.runtime_p50,
        runtime_p95=summary.runtime_p95,
        runtime_max=summary.runtime_max,
        throughput_per_minute=throughput,
        completed_last_minute=summary.completed_since,
    )


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, pandas' ``quantile``)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
