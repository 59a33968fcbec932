"""Metrics from a store's summary of the attempt history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queuectl.model import Outcome
from queuectl.model.metrics import AttemptSummary, compute, quantile

START = datetime(2026, 1, 1, tzinfo=UTC)


def summary(by_outcome: dict[Outcome, int], span: float) -> AttemptSummary:
    return AttemptSummary(by_outcome, START, START + timedelta(seconds=span), 2, 1.0, 1.0, 2.0, 3.0)


def test_failure_rate_and_throughput() -> None:
    metrics = compute(summary({Outcome.COMPLETED: 6, Outcome.FAILED: 1, Outcome.LOST: 1}, 120))
    assert metrics.attempts == 8
    assert metrics.by_outcome == {
        "completed": 6,
        "failed": 1,
        "timeout": 0,
        "lost": 1,
        "cancelled": 0,
    }
    assert metrics.failure_rate == 2 / 8


def test_cancelled_attempts_are_not_failures() -> None:
    metrics = compute(summary({Outcome.COMPLETED: 3, Outcome.FAILED: 1, Outcome.CANCELLED: 4}, 60))
    assert (metrics.attempts, metrics.failure_rate) == (8, 1 / 4)
    only_cancelled = compute(summary({Outcome.CANCELLED: 2}, 60))
    assert only_cancelled.failure_rate is None
    assert metrics.throughput_per_minute == 3.0  # 6 completed over two minutes
    assert (metrics.runtime_p95, metrics.completed_last_minute) == (2.0, 2)


def test_no_throughput_without_completions_or_a_span() -> None:
    assert compute(summary({Outcome.FAILED: 2}, 60)).throughput_per_minute is None
    assert compute(summary({Outcome.COMPLETED: 1}, 0)).throughput_per_minute is None
    empty = compute(AttemptSummary({}, None, None, 0, None, None, None, None))
    assert (empty.attempts, empty.failure_rate, empty.throughput_per_minute) == (0, None, None)


def test_quantiles_interpolate_like_numpy() -> None:
    ordered = [1.0, 1.5, 3.0, 4.0, 9.0]
    assert quantile(ordered, 0.5) == 3.0
    assert quantile(ordered, 0.95) == pytest.approx(8.0)  # as numpy.quantile: 4 + 0.8 x (9 - 4)
    assert quantile([2.5], 0.95) == 2.5 and quantile([], 0.5) is None
