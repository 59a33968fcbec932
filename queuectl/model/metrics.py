"""Queue metrics computed from the attempt history. Pure."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from queuectl.model.job import Outcome


@dataclass(frozen=True)
class FinishedAttempt:
    """The outcome and timing of one finished attempt."""

    outcome: Outcome
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class Metrics:
    """Throughput, runtimes and failure rate of the finished attempts of a queue.

    Runtimes are those of completed attempts. ``failure_rate`` is the share of finished
    attempts that failed, timed out or were lost. ``throughput_per_minute`` counts completed
    attempts over the span from the first start to the last finish; ``completed_last_minute``
    those that finished in the minute before ``now``.
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


def compute(attempts: Sequence[FinishedAttempt], now: datetime) -> Metrics:
    """Summarize finished attempts as ``Metrics``."""
    by_outcome = Counter(a.outcome.value for a in attempts)
    counts = {outcome.value: by_outcome.get(outcome.value, 0) for outcome in Outcome}
    completed = [a for a in attempts if a.outcome is Outcome.COMPLETED]
    runtimes = sorted((a.finished_at - a.started_at).total_seconds() for a in completed)
    throughput = None
    if completed:
        span = (
            max(a.finished_at for a in attempts) - min(a.started_at for a in attempts)
        ).total_seconds()
        throughput = len(completed) * 60 / span if span > 0 else None
    recent = now - timedelta(minutes=1)
    return Metrics(
        attempts=len(attempts),
        by_outcome=counts,
        failure_rate=(len(attempts) - len(completed)) / len(attempts) if attempts else None,
        runtime_mean=math.fsum(runtimes) / len(runtimes) if runtimes else None,
        runtime_p50=_quantile(runtimes, 0.50),
        runtime_p95=_quantile(runtimes, 0.95),
        runtime_max=runtimes[-1] if runtimes else None,
        throughput_per_minute=throughput,
        completed_last_minute=sum(1 for a in completed if a.finished_at >= recent),
    )


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, pandas' ``quantile``)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
