"""The retry policy and the backoff formula of DESIGN.md."""

from __future__ import annotations

import pytest

from queuectl.model import Outcome, RunResult, State
from queuectl.model.policy import after_attempt, backoff_delay

FAIL = RunResult(Outcome.FAILED, 3, None)


@pytest.mark.parametrize(
    ("attempts", "base", "cap", "expected"),
    [
        (1, 2, 300, 2),
        (2, 2, 300, 4),
        (3, 2, 300, 8),
        (9, 2, 300, 300),
        (1000, 2, 300, 300),
        (5, 1, 300, 1),
        (1, 3, 300, 3),
        (2, 2, 0, 0),
        (0, 2, 300, 0),
        (10**9, 3600, 300, 300),
    ],
)
def test_backoff_is_min_of_power_and_cap(
    attempts: int, base: float, cap: float, expected: float
) -> None:
    assert backoff_delay(attempts, base, cap) == expected


def test_two_retries_mean_three_runs_waiting_two_then_four_seconds() -> None:
    first = after_attempt(FAIL, 1, 2, 2, 300)
    second = after_attempt(FAIL, 2, 2, 2, 300)
    third = after_attempt(FAIL, 3, 2, 2, 300)
    assert (first.state, first.retry_delay) == (State.FAILED, 2)
    assert (second.state, second.retry_delay) == (State.FAILED, 4)
    assert third.state is State.DEAD
    assert third.last_error == "exit code 3"


def test_zero_retries_go_to_the_dlq_at_the_first_failure() -> None:
    assert after_attempt(FAIL, 1, 0, 2, 300).state is State.DEAD


def test_success_completes_whatever_the_retries() -> None:
    done = after_attempt(RunResult(Outcome.COMPLETED, 0, None), 1, 0, 2, 300)
    assert done.state is State.COMPLETED
    assert done.last_error is None


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (RunResult(Outcome.TIMEOUT, -15, "timed out after 1 s"), "timed out after 1 s"),
        (RunResult(Outcome.LOST, None, None), "lost"),
        (RunResult(Outcome.FAILED, 127, None), "exit code 127"),
    ],
)
def test_failure_reason_names_what_happened(result: RunResult, reason: str) -> None:
    assert after_attempt(result, 1, 3, 2, 300).last_error == reason
