"""Retry policy: what happens to a job after an attempt. Pure functions of their arguments."""

from __future__ import annotations

import math

from queuectl.model.job import Outcome, RunResult, State, Transition

#: seconds between the SIGTERM and the SIGKILL that stop a job (timeout, cancel, stop now)
KILL_GRACE = 2.0


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before the next attempt: ``min(base ** attempts, cap)``.

    With ``base = 2`` and ``cap = 300`` the waits after attempts 1, 2, 3 ... are 2, 4, 8 ... s,
    never more than 300 s. Large exponents are capped without computing the huge power.
    """
    if attempts <= 0 or cap <= 0:
        return 0.0
    if base > 1 and attempts * math.log(base) >= math.log(cap):
        return float(cap)
    return float(min(base**attempts, cap))


def after_attempt(
    result: RunResult, attempts: int, max_retries: int, base: float, cap: float
) -> Transition:
    """Decide the job's next state once attempt number ``attempts`` has ended.

    A success completes the job. A failure is retried while ``attempts <= max_retries``
    (``max_retries = 2``: three runs in all, waiting 2 s then 4 s with base 2); after that the job
    is dead, in the DLQ. A run stopped by a cancel request ends the job as cancelled.
    """
    if result.outcome is Outcome.COMPLETED:
        return Transition(State.COMPLETED)
    reason = describe_failure(result)
    if result.outcome is Outcome.CANCELLED:
        return Transition(State.CANCELLED, 0.0, reason)
    if attempts <= max_retries:
        return Transition(State.FAILED, backoff_delay(attempts, base, cap), reason)
    return Transition(State.DEAD, 0.0, reason)


def describe_failure(result: RunResult) -> str:
    """A short reason for ``last_error``: exit code, timeout, lost worker or spawn error."""
    if result.error:
        return result.error
    if result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return result.outcome.value
