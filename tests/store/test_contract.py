"""The store contract: every store (SQLite and PostgreSQL) must pass this module.

Time is driven by a fake clock so leases and backoff are checked exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from queuectl.errors import DuplicateJob, InvalidInput, InvalidTransition, NotFound
from queuectl.model import Config, NewJob, Outcome, QueueCopy, RunResult, State, Transition
from queuectl.model.metrics import AttemptSummary, quantile
from queuectl.store import open_store
from queuectl.store.base import Store

OK = RunResult(Outcome.COMPLETED, 0, None, b"out", b"err")
FAIL = RunResult(Outcome.FAILED, 1, "exit code 1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(queue_target: str, clock: FakeClock) -> Iterator[Store]:
    s = open_store(queue_target, clock=clock)
    yield s
    s.close()


def add(store: Store, *ids: str, **fields: object) -> None:
    store.enqueue([NewJob(command=f"echo {i}", id=i, **fields) for i in ids])  # type: ignore[arg-type]


def test_enqueue_fills_defaults_from_config(store: Store, queue_target: str) -> None:
    add(store, "before")
    store.set_config("max_retries", 7)
    store.set_config("job_timeout", 12)
    add(store, "a")
    job = store.get("a")
    assert (job.state, job.attempts, job.max_retries, job.timeout) == (State.PENDING, 0, 7, 12)
    assert job.run_at == job.created_at == store.now()
    assert store.get("before").max_retries == 3
    other = open_store(queue_target)  # another process, say the CLI, changes it
    other.set_config("max_retries", 1)
    other.close()
    add(store, "after")
    assert store.get("after").max_retries == 1


def test_one_enqueue_takes_whole_and_fractional_numbers_together(store: Store) -> None:
    store.enqueue([NewJob("true", "a", timeout=5), NewJob("true", "b", timeout=2.5, priority=3)])
    assert (store.get("a").timeout, store.get("b").timeout) == (5, 2.5)
    assert [job.id for job in store.jobs()] == ["b", "a"]  # in the order given


def test_duplicate_id_inserts_nothing(store: Store) -> None:
    add(store, "a")
    with pytest.raises(DuplicateJob, match="'a'"):
        add(store, "b", "a")
    assert [j.id for j in store.jobs()] == ["a"]


def test_claim_order_priority_then_run_at_then_enqueue_order(
    store: Store, clock: FakeClock
) -> None:
    now = datetime.fromtimestamp(clock.now, UTC)
    add(store, "low1", "low2")
    add(store, "high", priority=5)
    add(store, "early", run_at=now - timedelta(seconds=10))
    add(store, "future", priority=9, run_at=now + timedelta(seconds=10))
    order = []
    while claim := store.claim("w", 30):
        order.append(claim.job.id)
    assert order == ["high", "early", "low1", "low2"]
    clock.now += 11
    assert store.claim("w", 30).job.id == "future"  # type: ignore[union-attr]


def test_a_delay_counts_from_the_stores_clock(store: Store, clock: FakeClock) -> None:
    now = datetime.fromtimestamp(clock.now, UTC)
    store.enqueue(  # one batch mixing the ways to say when, so that each row gets its own
        [
            NewJob("echo", "later", delay=90.5),
            NewJob("echo", "at", run_at=now + timedelta(seconds=30)),
            NewJob("echo", "zero", delay=0.0),
            NewJob("echo", "plain"),
        ]
    )
    runs = {job.id: job.run_at - job.created_at for job in store.jobs()}
    assert runs == {
        "later": timedelta(seconds=90.5),
        "at": timedelta(seconds=30),
        "zero": timedelta(0),
        "plain": timedelta(0),
    }
    assert store.get("later").created_at == now
    assert [store.claim("w", 30).job.id for _ in range(2)] == ["zero", "plain"]  # type: ignore[union-attr]
    clock.now += 90
    assert store.claim("w", 30).job.id == "at"  # type: ignore[union-attr]
    assert store.claim("w", 30) is None
    clock.now += 0.5
    assert store.claim("w", 30).job.id == "later"  # type: ignore[union-attr]


def test_claim_starts_an_attempt_under_a_lease(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    claim = store.claim("w1", 30)
    assert claim is not None
    job = store.get("a")
    assert (job.state, job.attempts, job.worker_id) == (State.PROCESSING, 1, "w1")
    assert job.lease_until == store.now() + timedelta(seconds=30)
    (attempt,) = store.attempts("a")
    assert (attempt.number, attempt.worker_id, attempt.outcome) == (1, "w1", None)
    assert claim.fence.attempt == 1


def test_finish_records_the_attempt(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    claim = store.claim("w", 30)
    assert claim
    clock.now += 2.5
    assert store.finish(claim.fence, OK, Transition(State.COMPLETED))
    job = store.get("a")
    assert (job.state, job.worker_id, job.lease_until) == (State.COMPLETED, None, None)
    (attempt,) = store.attempts("a")
    assert (attempt.outcome, attempt.exit_code, attempt.stdout, attempt.stderr) == (
        Outcome.COMPLETED,
        0,
        b"out",
        b"err",
    )
    assert attempt.duration == 2.5


def test_failed_job_waits_for_its_backoff(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    claim = store.claim("w", 30)
    assert claim
    store.finish(claim.fence, FAIL, Transition(State.FAILED, 4, "exit code 1"))
    job = store.get("a")
    assert job.state is State.FAILED
    assert job.run_at == store.now() + timedelta(seconds=4)
    assert job.last_error == "exit code 1"
    clock.now += 3.9
    assert store.claim("w", 30) is None
    clock.now += 0.2
    again = store.claim("w", 30)
    assert again and again.fence.attempt == 2


def test_fencing_rejects_a_worker_that_lost_its_lease(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    stale = store.claim("w1", 10)
    assert stale
    clock.now += 11
    (expired,) = store.expired()
    assert store.finish(
        expired.fence,
        RunResult(Outcome.LOST, None, "lost"),
        Transition(State.FAILED, 0, "lost"),
        only_if_expired=True,
    )
    fresh = store.claim("w2", 10)
    assert fresh and fresh.fence.attempt == 2
    # The first worker wakes up and tries to record and renew: nothing changes.
    assert not store.finish(stale.fence, OK, Transition(State.COMPLETED))
    assert store.renew([stale.fence], 10) == set()
    assert store.get("a").state is State.PROCESSING
    assert store.finish(fresh.fence, OK, Transition(State.COMPLETED))
    outcomes = [a.outcome for a in store.attempts("a")]
    assert outcomes == [Outcome.LOST, Outcome.COMPLETED]


def test_finish_and_claim_records_then_takes_the_next_job(store: Store, clock: FakeClock) -> None:
    add(store, "a", "b")
    first = store.claim("w", 30)
    assert first
    clock.now += 1
    recorded, second = store.finish_and_claim(first.fence, OK, Transition(State.COMPLETED), "w", 20)
    assert recorded and second and second.job.id == "b"
    assert store.get("a").state is State.COMPLETED
    assert store.attempts("a")[0].outcome is Outcome.COMPLETED
    job = store.get("b")
    assert (job.state, job.worker_id, job.attempts) == (State.PROCESSING, "w", 1)
    assert job.lease_until == store.now() + timedelta(seconds=20)
    assert second.fence.attempt_id != first.fence.attempt_id
    counts = store.counts()
    assert (counts[State.COMPLETED], counts[State.PROCESSING], counts[State.PENDING]) == (1, 1, 0)
    recorded, none_left = store.finish_and_claim(
        second.fence, FAIL, Transition(State.DEAD, 0, "exit code 1"), "w", 20
    )
    assert recorded and none_left is None
    assert store.counts()[State.DEAD] == 1


def test_finish_and_claim_claims_even_when_the_fence_is_gone(
    store: Store, clock: FakeClock
) -> None:
    add(store, "a")
    stale = store.claim("w1", 10)
    assert stale
    clock.now += 11
    (expired,) = store.expired()
    lost = RunResult(Outcome.LOST, None, "lost")
    assert store.finish(
        expired.fence, lost, Transition(State.FAILED, 0, "lost"), only_if_expired=True
    )
    # The stale worker's result is refused, but it is alive and takes the job again.
    recorded, again = store.finish_and_claim(stale.fence, OK, Transition(State.COMPLETED), "w1", 10)
    assert not recorded
    assert again and (again.job.id, again.fence.attempt) == ("a", 2)
    assert [a.outcome for a in store.attempts("a")] == [Outcome.LOST, None]


def test_same_worker_and_number_after_dlq_retry_is_still_fenced(
    store: Store, clock: FakeClock
) -> None:
    add(store, "a", max_retries=0)
    stale = store.claim("w", 10)
    assert stale
    clock.now += 11
    (expired,) = store.expired()
    store.finish(expired.fence, FAIL, Transition(State.DEAD, 0, "lost"), only_if_expired=True)
    store.retry(["a"])
    again = store.claim("w", 10)
    assert again and (again.fence.attempt, again.fence.worker_id) == (1, "w")
    assert not store.finish(stale.fence, OK, Transition(State.COMPLETED))


def test_renewal_keeps_the_job_from_expiring(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    claim = store.claim("w", 10)
    assert claim
    clock.now += 8
    assert store.renew([claim.fence], 10) == {claim.fence.attempt_id}
    clock.now += 8
    assert store.expired() == []
    # A recovery that raced with the renewal is refused.
    assert not store.finish(
        claim.fence,
        RunResult(Outcome.LOST, None, None),
        Transition(State.FAILED),
        only_if_expired=True,
    )


def test_retry_resets_attempts_and_keeps_history(store: Store) -> None:
    add(store, "a", max_retries=0)
    claim = store.claim("w", 30)
    assert claim
    store.finish(claim.fence, FAIL, Transition(State.DEAD, 0, "exit code 1"))
    (job,) = store.retry(["a"])
    assert (job.state, job.attempts) == (State.PENDING, 0)
    assert len(store.attempts("a")) == 1


def test_retry_is_all_or_nothing(store: Store) -> None:
    add(store, "dead", "alive", max_retries=0)
    claim = store.claim("w", 30)
    assert claim and claim.job.id == "dead"
    store.finish(claim.fence, FAIL, Transition(State.DEAD))
    with pytest.raises(InvalidTransition, match="'alive' is pending"):
        store.retry(["dead", "alive"])
    with pytest.raises(NotFound):
        store.retry(["dead", "ghost"])
    assert store.get("dead").state is State.DEAD
    assert [j.id for j in store.retry_all_dead()] == ["dead"]


def test_counts_cover_every_state(store: Store) -> None:
    add(store, "a", "b")
    assert store.counts() == {state: 0 for state in State} | {State.PENDING: 2}


def test_counts_follow_every_transition(store: Store) -> None:
    add(store, "a", "b")
    claim = store.claim("w", 30)
    assert claim is not None
    assert store.counts()[State.PROCESSING] == 1 and store.counts()[State.PENDING] == 1
    store.finish(claim.fence, RunResult(Outcome.FAILED, 1, "exit code 1"), Transition(State.DEAD))
    store.retry([claim.job.id])
    assert store.counts()[State.PENDING] == 2 and store.counts()[State.DEAD] == 0


def test_attempt_summary_counts_spans_and_runtimes(store: Store, clock: FakeClock) -> None:
    empty = store.attempt_summary(store.now())
    assert empty == AttemptSummary({}, None, None, 0, None, None, None, None)
    start = store.now()
    runtimes = [3.0, 1.0, 4.0, 1.5, 9.0]
    add(store, *(f"ok{n}" for n in range(len(runtimes))), "bad", "running")
    for runtime in runtimes:
        claim = store.claim("w", 60)
        assert claim
        clock.now += runtime
        store.finish(claim.fence, OK, Transition(State.COMPLETED))
    bad = store.claim("w", 60)
    assert bad
    clock.now += 0.5
    store.finish(bad.fence, FAIL, Transition(State.DEAD, 0, "exit code 1"))
    assert store.claim("w", 60)  # running: not finished, not counted
    # The completed attempts finished at 3, 4, 8, 9.5 and 18.5 s.
    summary = store.attempt_summary(since=start + timedelta(seconds=9.5))
    assert summary.by_outcome == {Outcome.COMPLETED: 5, Outcome.FAILED: 1}
    assert (summary.first_start, summary.last_finish) == (start, start + timedelta(seconds=19))
    assert summary.completed_since == 2  # at or after: 9.5 s counts
    ordered = sorted(runtimes)
    assert summary.runtime_mean == pytest.approx(sum(runtimes) / len(runtimes))
    assert summary.runtime_p50 == pytest.approx(quantile(ordered, 0.5))
    assert summary.runtime_p95 == pytest.approx(quantile(ordered, 0.95))
    assert summary.runtime_max == pytest.approx(9.0)


def test_jobs_newest_first_filter_and_limit(store: Store) -> None:
    add(store, "a", "b", "c")
    assert [j.id for j in store.jobs()] == ["c", "b", "a"]
    assert [j.id for j in store.jobs(limit=2)] == ["c", "b"]
    assert store.jobs(State.DEAD) == []


def test_unknown_job(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.attempts("nope")


def test_workers_register_heartbeat_stop_and_prune(store: Store, clock: FakeClock) -> None:
    store.register_worker("p1", "host", 1, 4)
    store.register_worker("p2", "host", 2, 1)
    assert store.heartbeat("p1") is False
    assert store.request_stop(["p1"]) == 1
    assert store.heartbeat("p1") is True
    assert store.stop_requested("p1") is True
    assert store.stop_requested("p2") is False
    assert store.heartbeat("ghost") is None
    assert store.stop_requested("ghost") is None
    clock.now += 100
    store.heartbeat("p2")
    assert store.prune_workers(50) == ["p1"]
    assert [w.id for w in store.workers()] == ["p2"]
    store.deregister_worker("p2")
    assert store.workers() == []


def test_config_round_trip(store: Store) -> None:
    store.set_config("backoff_base", 1.5)
    store.set_config("backoff_base", 3)
    assert store.config().backoff_base == 3


def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    ids = [f"j{i}" for i in range(200)]
    add(store, *ids)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while claim := store.claim(name, 30):
            with lock:
                claimed.append(claim.job.id)
        store.release()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_import_copy_keeps_every_field_and_the_history(
    store: Store, clock: FakeClock, new_queue: Callable[[], str]
) -> None:
    store.set_config("max_retries", 0)
    store.set_config("backoff_base", 5)
    add(store, "done", "dead", "waiting")
    add(store, "later", priority=3, run_at=store.now() + timedelta(hours=1))
    for result in (OK, FAIL):
        claim = store.claim("w", 30)
        assert claim
        clock.now += 1.25
        state = State.COMPLETED if result is OK else State.DEAD
        store.finish(claim.fence, result, Transition(state, 0, result.error))
    copy = QueueCopy(list(reversed(store.jobs())), store.attempts(), store.config())

    target = open_store(new_queue(), clock=clock)
    try:
        target.import_copy(copy)
        assert target.jobs() == store.jobs()  # every field, and the enqueue order
        assert target.attempts() == store.attempts()
        assert target.config() == store.config()
        assert target.claim("w2", 30).job.id == "waiting"  # type: ignore[union-attr]
        # A second copy into a queue with jobs is refused, and changes nothing.
        with pytest.raises(InvalidInput, match="has 4 job"):
            target.import_copy(QueueCopy([], [], Config(max_retries=9)))
        assert target.config().max_retries == 0
    finally:
        target.close()


def test_import_copy_refuses_running_jobs(store: Store, new_queue: Callable[[], str]) -> None:
    add(store, "a", "b")
    assert store.claim("w", 30)
    copy = QueueCopy(list(reversed(store.jobs())), store.attempts(), store.config())
    target = open_store(new_queue())
    try:
        with pytest.raises(InvalidInput, match=r"1 job\(s\) are running \(a\)"):
            target.import_copy(copy)
        assert target.jobs() == []
    finally:
        target.close()


def test_reads_in_a_consistent_block_see_one_moment(store: Store, queue_target: str) -> None:
    add(store, "a")
    other = open_store(queue_target)  # another connection: another process's writes
    try:
        with store.consistent():
            before = store.counts()[State.PENDING]
            other.enqueue([NewJob(command="echo b", id="b")])
            with store.consistent():  # blocks nest
                assert store.counts()[State.PENDING] == before == 1
            assert [job.id for job in store.jobs()] == ["a"]
        assert store.counts()[State.PENDING] == 2
        assert [job.id for job in store.jobs()] == ["b", "a"]
        store.enqueue([NewJob(command="echo c", id="c")])  # the store writes again after it
    finally:
        other.close()


def check_one_attempt_sequence(store: Store) -> None:
    """After upgrading a version-4 queue holding "retried" (attempts 1, 2, 1) and "once"
    (attempt 4 alone): one sequence per job, new attempts numbered on from the highest."""
    assert [a.number for a in store.attempts("retried")] == [1, 2, 3]
    assert [a.number for a in store.attempts("once")] == [4]
    store.retry(["retried"])
    claim = store.claim("w", 30)
    assert claim is not None and claim.job.id == "retried"
    assert [a.number for a in store.attempts("retried")] == [1, 2, 3, 4]
    store.finish(claim.fence, RunResult(Outcome.FAILED, 1, "exit code 1"), Transition(State.DEAD))
    store.retry(["once"], (State.COMPLETED,))
    again = store.claim("w", 30)  # after a gap, on from the highest number
    assert again is not None and (again.job.id, again.number) == ("once", 5)
