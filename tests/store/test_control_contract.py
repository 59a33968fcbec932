"""The store contract for job control: cancel, bury, edit, rerun, pause, prune, cancel requests,
output while running; and the job fields that came with them (directory, variables).

Every store (SQLite and PostgreSQL) must pass this module, like ``test_contract.py``, whose
fake clock it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from queuectl.errors import InvalidInput, InvalidTransition, NotFound
from queuectl.model import (
    Claim,
    Config,
    Directory,
    JobChanges,
    NewJob,
    Outcome,
    QueueCopy,
    RunResult,
    State,
    Transition,
)
from queuectl.store import open_store
from queuectl.store.base import BURIED_ERROR, CANCELLED_ERROR, Store
from tests.store.test_contract import FAIL, OK, FakeClock, add

CANCELLED_RUN = RunResult(Outcome.CANCELLED, None, "cancelled by request", b"part", b"")
DONE = Transition(State.COMPLETED)
FINISHED = (State.COMPLETED, State.DEAD, State.CANCELLED)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(queue_target: str, clock: FakeClock) -> Iterator[Store]:
    s = open_store(queue_target, clock=clock)
    yield s
    s.close()


def claim(store: Store, worker: str = "w", lease: float = 30) -> Claim:
    claimed = store.claim(worker, lease)
    assert claimed is not None
    return claimed


def run(store: Store, result: RunResult, transition: Transition) -> Claim:
    """Claim the next job and finish it as given."""
    claimed = claim(store)
    assert store.finish(claimed.fence, result, transition)
    return claimed


def states(store: Store) -> dict[str, State]:
    return {job.id: job.state for job in store.jobs()}


def waiting_failed_and_finished(store: Store) -> None:
    """Jobs 'pending'; 'failed' (due again in a minute); 'done' (completed); 'gone' (dead)."""
    add(store, "failed", "done", "gone", "pending")
    run(store, FAIL, Transition(State.FAILED, 60, "exit code 1"))
    run(store, OK, Transition(State.COMPLETED))
    run(store, FAIL, Transition(State.DEAD, 0, "exit code 1"))


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_ends_waiting_jobs_at_once(store: Store, clock: FakeClock) -> None:
    waiting_failed_and_finished(store)
    clock.now += 5
    assert store.cancel(["pending", "failed"]) == {
        "pending": State.CANCELLED,
        "failed": State.CANCELLED,
    }
    for job_id in ("pending", "failed"):
        job = store.get(job_id)
        assert (job.state, job.last_error, job.updated_at) == (
            State.CANCELLED,
            CANCELLED_ERROR,
            store.now(),
        )
    assert store.counts()[State.CANCELLED] == 2
    assert store.counts()[State.PENDING] == store.counts()[State.FAILED] == 0
    clock.now += 3600
    assert store.claim("w", 30) is None  # never retried on its own


def test_cancel_of_a_running_job_is_a_request_that_its_end_fulfils(
    store: Store, clock: FakeClock
) -> None:
    add(store, "a", "b")
    first, second = claim(store), claim(store)
    assert store.cancel_requests([first.fence, second.fence]) == set()
    assert store.cancel(["a"]) == {"a": State.PROCESSING}
    job = store.get("a")
    assert (job.state, job.cancel_requested, job.worker_id) == (State.PROCESSING, True, "w")
    assert not store.get("b").cancel_requested
    assert store.cancel_requests([first.fence, second.fence]) == {first.fence.attempt_id}
    # The pool stops it; the run failed, and would have been retried without the request.
    clock.now += 1
    stopped = Transition(State.FAILED, 5, "cancelled by request")
    assert store.finish(first.fence, CANCELLED_RUN, stopped)
    job = store.get("a")
    assert (job.state, job.last_error, job.cancel_requested) == (
        State.CANCELLED,
        "cancelled by request",  # the run's reason
        False,
    )
    assert job.run_at == job.created_at  # not moved to a retry time
    assert store.last_attempt("a").outcome is Outcome.CANCELLED  # type: ignore[union-attr]
    assert store.cancel_requests([first.fence]) == set()
    assert store.counts()[State.CANCELLED] == 1
    clock.now += 60
    assert store.claim("w", 30) is None


def test_a_run_that_completes_despite_a_cancel_request_is_completed(store: Store) -> None:
    add(store, "a")
    claimed = claim(store)
    store.cancel(["a"])
    assert store.finish(claimed.fence, OK, Transition(State.COMPLETED))
    job = store.get("a")
    assert (job.state, job.last_error, job.cancel_requested) == (State.COMPLETED, None, False)


@pytest.mark.parametrize("how", ["dead", "lost", "finish_and_claim"])
def test_every_other_end_of_a_cancelled_run_cancels_the_job(
    store: Store, clock: FakeClock, how: str
) -> None:
    add(store, "a", "next", max_retries=0)
    claimed = claim(store, lease=10)
    store.cancel(["a"])
    if how == "dead":
        assert store.finish(claimed.fence, FAIL, Transition(State.DEAD, 0, "exit code 1"))
    elif how == "lost":
        clock.now += 11
        (expired,) = store.expired()
        lost = RunResult(Outcome.LOST, None, "lost")
        assert store.finish(
            expired.fence, lost, Transition(State.FAILED, 0, "lost"), only_if_expired=True
        )
    else:
        recorded, following = store.finish_and_claim(
            claimed.fence, FAIL, Transition(State.FAILED, 0, "exit code 1"), "w", 30
        )
        assert recorded and following and following.job.id == "next"
        assert not following.job.cancel_requested
    job = store.get("a")
    # the failure that came first is the reason it ended
    assert (job.state, job.last_error) == (
        State.CANCELLED,
        "lost" if how == "lost" else "exit code 1",
    )
    assert store.counts()[State.CANCELLED] == 1


def test_cancel_is_all_or_none(store: Store) -> None:
    waiting_failed_and_finished(store)
    before = store.jobs()
    with pytest.raises(NotFound, match="'ghost'"):
        store.cancel(["pending", "ghost"])
    with pytest.raises(
        InvalidTransition, match="'done' is completed, so there is nothing to cancel"
    ):
        store.cancel(["pending", "failed", "done"])
    with pytest.raises(InvalidTransition, match="'gone' is dead"):
        store.cancel(["gone"])
    assert store.jobs() == before


def test_cancel_everything_takes_waiting_jobs_only(store: Store) -> None:
    waiting_failed_and_finished(store)
    add(store, "queued")
    assert claim(store).job.id == "pending"  # (enqueued first)
    assert store.cancel(None) == {"failed": State.CANCELLED, "queued": State.CANCELLED}
    assert states(store) == {
        "queued": State.CANCELLED,
        "pending": State.PROCESSING,
        "gone": State.DEAD,
        "done": State.COMPLETED,
        "failed": State.CANCELLED,
    }
    assert not store.get("pending").cancel_requested
    assert store.cancel(None) == {}


# -- bury, rerun ------------------------------------------------------------------------------


def test_bury_moves_waiting_jobs_to_the_dlq(store: Store, clock: FakeClock) -> None:
    waiting_failed_and_finished(store)
    add(store, "queued")
    assert claim(store).job.id == "pending"
    before = store.jobs()
    with pytest.raises(InvalidTransition, match="'pending' is processing, not waiting"):
        store.bury(["failed", "pending"])
    with pytest.raises(InvalidTransition, match="'done' is completed"):
        store.bury(["done"])
    with pytest.raises(NotFound, match="'ghost'"):
        store.bury(["queued", "ghost"])
    assert store.jobs() == before
    clock.now += 2
    buried = store.bury(["failed", "queued"])
    assert sorted(job.id for job in buried) == ["failed", "queued"]
    for job in buried:
        assert (job.state, job.last_error, job.updated_at) == (
            State.DEAD,
            BURIED_ERROR,
            store.now(),
        )
        assert store.get(job.id) == job
    assert store.counts()[State.DEAD] == 3
    assert sorted(job.id for job in store.retry_all_dead()) == ["failed", "gone", "queued"]


def test_retry_reruns_finished_jobs_of_the_states_given(store: Store, clock: FakeClock) -> None:
    waiting_failed_and_finished(store)
    store.cancel(["pending"])
    finished = (State.COMPLETED, State.DEAD, State.CANCELLED)
    with pytest.raises(InvalidTransition, match="'done' is completed, not dead"):
        store.retry(["done"])
    with pytest.raises(InvalidTransition, match="'failed' is failed, not finished"):
        store.retry(["done", "failed"], states=finished)
    assert store.get("done").state is State.COMPLETED
    clock.now += 10
    rerun = store.retry(["done", "pending", "gone"], states=finished)
    assert sorted(job.id for job in rerun) == ["done", "gone", "pending"]
    for job in rerun:
        assert (job.state, job.attempts, job.run_at, job.cancel_requested) == (
            State.PENDING,
            0,
            store.now(),
            False,
        )
    assert len(store.attempts("done")) == 1  # the history stays
    assert store.counts()[State.CANCELLED] == 0
    assert store.counts()[State.PENDING] == 3


# -- edit -------------------------------------------------------------------------------------


def test_edit_changes_only_the_fields_given(store: Store, clock: FakeClock) -> None:
    add(store, "a", priority=1, timeout=5)
    original = store.get("a")
    clock.now += 7
    edited = store.edit("a", JobChanges(command="echo edited", max_retries=9))
    assert edited == store.get("a")
    assert (edited.command, edited.max_retries, edited.priority, edited.timeout) == (
        "echo edited",
        9,
        1,
        5,
    )
    assert (edited.run_at, edited.created_at) == (original.run_at, original.created_at)
    assert edited.updated_at == store.now()
    edited = store.edit("a", JobChanges(priority=-3, timeout=0.5))
    assert (edited.priority, edited.timeout, edited.command) == (-3, 0.5, "echo edited")
    when = store.now() + timedelta(hours=2)
    assert store.edit("a", JobChanges(run_at=when)).run_at == when


def test_an_edited_delay_counts_from_the_stores_clock(store: Store, clock: FakeClock) -> None:
    add(store, "a", "b")
    clock.now += 100
    assert store.edit("a", JobChanges(delay=30.5)).run_at == store.now() + timedelta(seconds=30.5)
    assert claim(store).job.id == "b"
    clock.now += 30
    assert store.claim("w", 30) is None
    clock.now += 0.5
    assert claim(store).job.id == "a"


def test_edit_of_a_failed_job_keeps_it_failed(store: Store) -> None:
    add(store, "a")
    run(store, FAIL, Transition(State.FAILED, 60, "exit code 1"))
    edited = store.edit("a", JobChanges(delay=0))
    assert (edited.state, edited.attempts, edited.run_at) == (State.FAILED, 1, store.now())
    assert claim(store).fence.attempt == 2


def test_edit_refuses_jobs_that_are_not_waiting(store: Store) -> None:
    add(store, "a", "b")
    claimed = claim(store)  # a worker took 'a' before the edit came
    before = store.get("a")
    with pytest.raises(
        InvalidTransition, match=r"'a' is processing \(claimed meanwhile\): it was not changed"
    ):
        store.edit("a", JobChanges(command="echo edited", priority=4))
    assert store.get("a") == before
    store.finish(claimed.fence, OK, Transition(State.COMPLETED))
    with pytest.raises(InvalidTransition, match="'a' is completed: only blocked, pending or"):
        store.edit("a", JobChanges(priority=4))
    with pytest.raises(NotFound, match="'ghost'"):
        store.edit("ghost", JobChanges(priority=4))


# -- pause ------------------------------------------------------------------------------------


def test_a_paused_queue_hands_out_no_job(store: Store, clock: FakeClock, queue_target: str) -> None:
    add(store, "a", "b", "c")
    running = claim(store)
    assert not store.paused()
    assert store.set_paused(True) is True
    assert store.set_paused(True) is False  # nothing changed
    assert store.paused()
    assert store.claim("w", 30) is None
    other = open_store(queue_target, clock=clock)  # another process, say another pool
    try:
        assert other.paused()
        assert other.claim("w2", 30) is None
        # A running job finishes; its pool takes no next one.
        recorded, following = store.finish_and_claim(
            running.fence, OK, Transition(State.COMPLETED), "w", 30
        )
        assert recorded and following is None
        assert store.config() == Config()  # the pause is not a setting
        assert other.set_paused(False) is True
        assert other.set_paused(False) is False
        assert not store.paused()
        assert claim(store).job.id == "b"
        assert claim(other, "w2").job.id == "c"
    finally:
        other.close()


def test_settings_round_trip_beside_a_pause(store: Store) -> None:
    store.set_paused(True)
    store.set_config("job_directory", Directory.POOL)
    store.set_config("retention", 86400.5)
    store.set_config("max_retries", 4)
    config = store.config()
    assert (config.job_directory, config.retention, config.max_retries) == (
        Directory.POOL,
        86400.5,
        4,
    )
    assert store.paused()


# -- prune ------------------------------------------------------------------------------------


def aged_jobs(store: Store, clock: FakeClock) -> Callable[[float], datetime]:
    """Jobs finished an hour apart: 'c0' completed, 'd1' dead, 'x2' cancelled, 'c3' completed,
    with one attempt each but 'x2'; 'p' pending and 'r' running from the start, a day before
    the clock's time now. Returns the time that many hours after 'c0' finished."""
    add(store, "p", delay=1e7)
    add(store, "c0", "d1", "r", "c3", max_retries=0)
    start = clock.now
    run(store, OK, Transition(State.COMPLETED))
    clock.now += 3600
    run(store, FAIL, Transition(State.DEAD, 0, "exit code 1"))
    claim(store)  # 'r'
    clock.now += 3600
    add(store, "x2")
    store.cancel(["x2"])
    clock.now += 3600
    run(store, OK, Transition(State.COMPLETED))
    clock.now += 86400
    return lambda hours: datetime.fromtimestamp(start + hours * 3600, UTC)


def test_prune_deletes_old_finished_jobs_with_their_attempts(
    store: Store, clock: FakeClock
) -> None:
    at = aged_jobs(store, clock)
    assert set(states(store)) == {"p", "c0", "d1", "r", "x2", "c3"}
    assert store.prune(at(2.5), FINISHED, dry_run=True) == 3
    assert set(states(store)) == {"p", "c0", "d1", "r", "x2", "c3"}  # dry run: nothing deleted
    assert store.prune(at(2.5), [State.COMPLETED]) == 1  # only the states given
    assert set(states(store)) == {"p", "d1", "r", "x2", "c3"}
    with pytest.raises(NotFound):
        store.attempts("c0")
    assert [a.job_id for a in store.attempts()] == ["d1", "r", "c3"]
    assert store.prune(at(1), FINISHED) == 0  # only older ones: 'd1' finished at 1 h
    assert store.prune(at(1.001), FINISHED) == 1
    assert store.prune(at(1000), FINISHED) == 2
    assert states(store) == {"p": State.PENDING, "r": State.PROCESSING}
    assert [a.job_id for a in store.attempts()] == ["r"]
    counts = store.counts()
    assert counts == {state: 0 for state in State} | {State.PENDING: 1, State.PROCESSING: 1}


def test_prune_takes_the_oldest_first_up_to_a_limit(store: Store, clock: FakeClock) -> None:
    aged_jobs(store, clock)
    assert store.prune(store.now(), FINISHED, limit=2, dry_run=True) == 2
    assert store.prune(store.now(), FINISHED, limit=2) == 2
    assert set(states(store)) == {"p", "r", "x2", "c3"}
    assert store.prune(store.now(), FINISHED, limit=1, skip_if_busy=True) == 1
    assert set(states(store)) == {"p", "r", "c3"}
    assert store.prune(store.now(), FINISHED, limit=0) == 0
    assert store.counts()[State.COMPLETED] == 1 and store.counts()[State.CANCELLED] == 0


def test_prune_refuses_unfinished_states(store: Store, clock: FakeClock) -> None:
    aged_jobs(store, clock)
    before = store.jobs()
    for active in (State.PENDING, State.PROCESSING, State.FAILED):
        with pytest.raises(InvalidInput, match=f"only finished jobs.*not {active.value}"):
            store.prune(store.now(), [State.COMPLETED, active])
    assert store.jobs() == before
    assert store.prune(store.now(), []) == 0


def test_a_rerun_job_is_pruned_by_its_last_update(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    run(store, OK, Transition(State.COMPLETED))
    clock.now += 100
    store.retry(["a"], states=FINISHED)
    run(store, OK, Transition(State.COMPLETED))
    assert store.prune(store.now() - timedelta(seconds=50), FINISHED) == 0
    clock.now += 1
    assert store.prune(store.now(), FINISHED) == 1
    assert store.jobs() == [] and store.attempts() == []


# -- while a job runs -------------------------------------------------------------------------


def test_record_output_while_the_fence_holds(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    claimed = claim(store, lease=10)
    so_far = RunResult(Outcome.FAILED, None, None, b"tail", b"err tail", 4000, 8)
    assert store.record_output(claimed.fence, so_far)
    attempt = store.last_attempt("a")
    assert attempt is not None
    assert (attempt.stdout, attempt.stderr, attempt.stdout_bytes, attempt.stderr_bytes) == (
        b"tail",
        b"err tail",
        4000,
        8,
    )
    assert (attempt.outcome, attempt.finished_at) == (None, None)  # still running
    final = RunResult(Outcome.COMPLETED, 0, None, b"end", b"", 5000, 8)
    assert store.finish(claimed.fence, final, Transition(State.COMPLETED))
    assert not store.record_output(claimed.fence, so_far)  # too late: nothing is written
    attempt = store.last_attempt("a")
    assert attempt is not None
    assert (attempt.stdout, attempt.stdout_bytes, attempt.outcome) == (
        b"end",
        5000,
        Outcome.COMPLETED,
    )


def test_record_output_of_a_worker_that_lost_its_lease(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    stale = claim(store, "w1", lease=10)
    clock.now += 11
    (expired,) = store.expired()
    lost = RunResult(Outcome.LOST, None, "lost")
    assert store.finish(
        expired.fence, lost, Transition(State.FAILED, 0, "lost"), only_if_expired=True
    )
    fresh = claim(store, "w2")
    assert not store.record_output(stale.fence, RunResult(Outcome.FAILED, None, None, b"old"))
    assert [a.stdout for a in store.attempts("a")] == [b"", b""]
    assert store.record_output(fresh.fence, RunResult(Outcome.FAILED, None, None, b"new"))
    assert [a.stdout for a in store.attempts("a")] == [b"", b"new"]


def test_finish_records_byte_counts(store: Store) -> None:
    add(store, "a", "b")
    run(store, RunResult(Outcome.COMPLETED, 0, None, b"x", b"y", 1 << 40, 1), DONE)
    run(store, OK, DONE)  # (a runner that counted nothing)
    assert [(a.stdout_bytes, a.stderr_bytes) for a in store.attempts()] == [
        (1 << 40, 1),
        (None, None),
    ]


def test_last_attempt(store: Store, clock: FakeClock) -> None:
    add(store, "a")
    assert store.last_attempt("a") is None
    with pytest.raises(NotFound, match="'ghost'"):
        store.last_attempt("ghost")
    run(store, FAIL, Transition(State.FAILED, 0, "exit code 1"))
    clock.now += 1
    second = claim(store)
    latest = store.last_attempt("a")
    assert latest is not None
    assert (latest.number, latest.outcome, latest.started_at) == (2, None, store.now())
    store.finish(second.fence, FAIL, Transition(State.DEAD, 0, "exit code 1"))
    store.retry(["a"])
    again = claim(store)
    latest = store.last_attempt("a")
    assert latest is not None and latest == store.attempts("a")[-1]
    # the history is one sequence; the job's own count (the retry budget) started again
    assert (latest.number, again.number, again.job.attempts, again.fence.attempt) == (3, 3, 1, 1)
    clock.now += 3600  # its lease runs out: the lost claim names the same attempt
    assert [(c.job.id, c.number) for c in store.expired()] == [("a", 3)]
    assert [a.number for a in store.attempts("a")] == [1, 2, 3]


def test_cancel_requests_of_no_fences(store: Store) -> None:
    assert store.cancel_requests([]) == set()


# -- job fields -------------------------------------------------------------------------------


def test_directory_and_variables_round_trip(store: Store) -> None:
    env = {"B": "two words", "A": "ü=1", "EMPTY": ""}
    store.enqueue(
        [
            NewJob("make", "a", cwd="/srv/build", enqueued_from="/home/me", env=env),
            NewJob("true", "b", enqueued_from="/home/me"),
            NewJob("true", "c"),
        ]
    )
    a, b, c = store.get("a"), store.get("b"), store.get("c")
    assert (a.cwd, a.enqueued_from, dict(a.env)) == ("/srv/build", "/home/me", env)
    assert (b.cwd, b.enqueued_from, dict(b.env)) == (None, "/home/me", {})
    assert (c.cwd, c.enqueued_from, dict(c.env), c.cancel_requested) == (None, None, {}, False)
    assert a.directory(Directory.POOL) == "/srv/build"
    assert b.directory(Directory.ENQUEUER) == "/home/me" and b.directory(Directory.POOL) is None
    assert store.jobs()[::-1] == [a, b, c]
    claimed = claim(store)
    assert (claimed.job.cwd, dict(claimed.job.env)) == ("/srv/build", env)


def test_import_copy_keeps_the_control_fields(
    store: Store, clock: FakeClock, new_queue: Callable[[], str]
) -> None:
    store.enqueue([NewJob("make", "a", cwd="/w", enqueued_from="/h", env={"K": "v"})])
    add(store, "b", "c")
    run(
        store,
        RunResult(Outcome.COMPLETED, 0, None, b"o", b"e", 10, 20),
        Transition(State.COMPLETED),
    )
    store.cancel(["b"])
    copy = QueueCopy(list(reversed(store.jobs())), store.attempts(), store.config())
    target = open_store(new_queue(), clock=clock)
    try:
        target.import_copy(copy)
        assert target.jobs() == store.jobs()
        assert target.attempts() == store.attempts()
        assert target.counts() == store.counts()
        assert target.counts()[State.CANCELLED] == 1
    finally:
        target.close()


def test_counts_include_cancelled(store: Store) -> None:
    add(store, "a", "b", "c")
    store.cancel(["a", "b"])
    assert store.counts() == {state: 0 for state in State} | {
        State.PENDING: 1,
        State.CANCELLED: 2,
    }
