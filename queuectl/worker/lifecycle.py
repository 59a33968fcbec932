"""What happens to a job after an attempt: the decisions the pool persists through the store.

These functions hold the policy and no SQL; the store applies their result under the fence.
"""

from __future__ import annotations

from queuectl.model import Claim, Config, Outcome, RunResult, Transition
from queuectl.model.policy import after_attempt
from queuectl.store.base import Store


def record(
    store: Store, claim: Claim, result: RunResult, config: Config, *, only_if_expired: bool = False
) -> bool:
    """Persist an attempt's result; False when the worker had lost the job (fenced out)."""
    transition = _transition(claim, result, config)
    return store.finish(claim.fence, result, transition, only_if_expired=only_if_expired)


def record_and_claim(
    store: Store, claim: Claim, result: RunResult, config: Config
) -> tuple[bool, Claim | None]:
    """``record``, and claim the same worker's next job in the same transaction."""
    transition = _transition(claim, result, config)
    return store.finish_and_claim(
        claim.fence, result, transition, claim.fence.worker_id, config.lease_seconds
    )


def _transition(claim: Claim, result: RunResult, config: Config) -> Transition:
    return after_attempt(
        result, claim.job.attempts, claim.job.max_retries, config.backoff_base, config.backoff_max
    )


def recover_expired(store: Store, config: Config) -> list[str]:
    """Fail every attempt whose lease ran out, as ``lost``; return the ids of those jobs.

    Each job then follows the normal failure path (retry with backoff, or the DLQ). A worker
    that renews its lease in the meantime keeps its job: the store re-checks the expiry under
    the fence.
    """
    recovered = []
    for claim in store.expired():
        result = RunResult(
            Outcome.LOST,
            None,
            f"lost: worker {claim.fence.worker_id} stopped renewing its lease",
        )
        if record(store, claim, result, config, only_if_expired=True):
            recovered.append(claim.job.id)
    return recovered
