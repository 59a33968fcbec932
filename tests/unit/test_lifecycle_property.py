"""The property the model must hold, checked with hypothesis on a real SQLite store.

Any interleaving of claims, successes, failures, lost leases, stale writes and DLQ retries keeps
states and attempts consistent with DESIGN.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from queuectl.model import Claim, Config, NewJob, Outcome, RunResult, State
from queuectl.store.sqlite import SqliteStore
from queuectl.worker import lifecycle

CONFIG = Config(backoff_base=2, backoff_max=8, lease_seconds=10)
LEASE = CONFIG.lease_seconds


class QueueMachine(RuleBasedStateMachine):
    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.clock = 1_900_000_000.0
        self.store = SqliteStore(Path(self.dir.name) / "q.db", clock=lambda: self.clock)
        self.jobs = 0
        self.stale: list[Claim] = []
        self.history_floor: dict[str, int] = {}

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    @rule(max_retries=st.integers(0, 3), priority=st.integers(-2, 2))
    def enqueue(self, max_retries: int, priority: int) -> None:
        job_id = f"j{self.jobs}"
        self.jobs += 1
        self.store.enqueue([NewJob("true", job_id, max_retries, priority)])

    @rule(target=claims, worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker: str) -> Claim | None:
        claim = self.store.claim(worker, LEASE)
        if claim is not None:
            assert claim.job.state is State.PROCESSING
            assert claim.job.attempts <= claim.job.max_retries + 1
        return claim

    @rule(
        claim=consumes(claims),
        outcome=st.sampled_from([Outcome.COMPLETED, Outcome.FAILED, Outcome.TIMEOUT]),
    )
    def finish(self, claim: Claim | None, outcome: Outcome) -> None:
        if claim is None:
            return
        before = self.store.get(claim.job.id)
        result = RunResult(outcome, 0 if outcome is Outcome.COMPLETED else 1, None)
        recorded = lifecycle.record(self.store, claim, result, CONFIG)
        if not recorded:  # fenced out: the job must not have changed at all
            assert self.store.get(claim.job.id) == before
            return
        after = self.store.get(claim.job.id)
        if outcome is Outcome.COMPLETED:
            assert after.state is State.COMPLETED
        elif claim.job.attempts <= claim.job.max_retries:
            assert after.state is State.FAILED
            assert after.last_error
        else:
            assert after.state is State.DEAD
        self.stale.append(claim)

    @rule(seconds=st.sampled_from([0.5, 3, 11]))
    def time_passes(self, seconds: float) -> None:
        self.clock += seconds

    @rule()
    def recover(self) -> None:
        for job_id in lifecycle.recover_expired(self.store, CONFIG):
            assert self.store.attempts(job_id)[-1].outcome is Outcome.LOST

    @precondition(lambda self: bool(self.stale))
    @rule(data=st.data())
    def stale_writer(self, data: st.DataObject) -> None:
        claim = data.draw(st.sampled_from(self.stale))
        before = self.store.get(claim.job.id)
        assert not lifecycle.record(
            self.store, claim, RunResult(Outcome.COMPLETED, 0, None), CONFIG
        )
        assert self.store.renew([claim.fence], LEASE) == set()
        assert self.store.get(claim.job.id) == before

    @rule()
    def dlq_retry_all(self) -> None:
        for job in self.store.retry_all_dead():
            assert (job.state, job.attempts) == (State.PENDING, 0)

    @invariant()
    def states_and_attempts_agree(self) -> None:
        jobs = self.store.jobs()
        assert len(jobs) == self.jobs
        history: dict[str, list[Any]] = {}
        for attempt in self.store.attempts():
            history.setdefault(attempt.job_id, []).append(attempt)
        for job in jobs:
            attempts = history.get(job.id, [])
            running = [a for a in attempts if a.outcome is None]
            if job.state is State.PROCESSING:
                assert len(running) == 1 and running[0].number == len(attempts)  # whole history
                assert job.worker_id and job.lease_until
            else:
                assert running == [] and job.worker_id is None
            if job.state is State.PENDING:
                assert job.attempts == 0
            if job.state is State.FAILED:
                assert 1 <= job.attempts <= job.max_retries
            if job.state is State.DEAD:
                assert job.attempts == job.max_retries + 1
            if job.state is State.COMPLETED:
                assert attempts[-1].outcome is Outcome.COMPLETED
            # Attempt numbers run 1, 2, ... over the whole history, across DLQ retries.
            assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
        counts = self.store.counts()
        assert sum(counts.values()) == self.jobs


QueueMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueLifecycle = QueueMachine.TestCase
