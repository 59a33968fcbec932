"""The store contract for dependencies: a job after others waits ``blocked``, goes when its last
parent lets it, is cancelled (with its own dependents) when a parent fails under ``ok``, and is
re-armed when that parent is retried. Every store (SQLite and PostgreSQL) must pass it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from queuectl.errors import InvalidInput, InvalidTransition, NotFound
from queuectl.model import (
    Claim,
    JobFilter,
    NewJob,
    Outcome,
    QueueCopy,
    RunResult,
    State,
    Transition,
)
from queuectl.model.dependencies import Edge
from queuectl.model.job import Rule
from queuectl.store import open_store
from queuectl.store.base import Store
from tests.store.test_contract import FakeClock

OK = RunResult(Outcome.COMPLETED, 0, None)
FAIL = RunResult(Outcome.FAILED, 1, "exit code 1")
DONE = Transition(State.COMPLETED)
DEAD = Transition(State.DEAD, 0, "exit code 1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(queue_target: str, clock: FakeClock) -> Iterator[Store]:
    s = open_store(queue_target, clock=clock)
    yield s
    s.close()


def run(store: Store, job_id: str, ok: bool = True) -> None:
    """Claim jobs until ``job_id`` comes, and finish it (completed, or dead)."""
    claim = store.claim("w", 30)
    assert claim is not None and claim.job.id == job_id, claim
    assert store.finish(claim.fence, OK if ok else FAIL, DONE if ok else DEAD)


def states(store: Store, *ids: str) -> list[str]:
    return [store.get(job_id).state.value for job_id in ids]


def test_a_child_waits_blocked_until_every_parent_completed(store: Store) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "b")])
    (child,) = store.enqueue([NewJob("true", "c", after=("a", "b"))])
    assert (child.state, child.unmet, child.after_rule) == (State.BLOCKED, 2, Rule.OK)
    assert store.counts()[State.BLOCKED] == 1
    run(store, "a")
    assert (store.get("c").state, store.get("c").unmet) == (State.BLOCKED, 1)
    run(store, "b")
    assert (store.get("c").state, store.get("c").unmet) == (State.PENDING, 0)
    run(store, "c")
    assert store.counts()[State.COMPLETED] == 3 and store.counts()[State.BLOCKED] == 0


def test_a_failed_parent_cancels_the_subtree_and_says_why(store: Store) -> None:
    store.enqueue([NewJob("true", "a")])
    store.enqueue(
        [
            NewJob("true", "b", after=("a",)),
            NewJob("true", "c", after=("b",)),
            NewJob("true", "any", after=("b",), after_rule=Rule.ANY),
        ]
    )
    run(store, "a", ok=False)
    b, c = store.get("b"), store.get("c")
    assert (b.state, b.cancelled_by, b.last_error) == (State.CANCELLED, "a", "parent a is dead")
    assert (c.state, c.last_error) == (State.CANCELLED, "parent b is cancelled")
    # under "any" a cancelled parent is a finished one: that job runs
    assert states(store, "any") == ["pending"]
    run(store, "any")


def test_the_any_rule_goes_after_a_dead_parent(store: Store) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "b")])
    store.enqueue([NewJob("true", "c", after=("a", "b"), after_rule=Rule.ANY)])
    run(store, "a", ok=False)
    assert states(store, "c") == ["blocked"]
    run(store, "b")
    assert states(store, "c") == ["pending"]


def test_retrying_the_parent_re_arms_what_it_cancelled(store: Store) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "other")])
    store.enqueue(
        [
            NewJob("true", "b", after=("a",)),
            NewJob("true", "c", after=("b", "other")),
            NewJob("true", "waits", after=("a", "other"), after_rule=Rule.ANY),
        ]
    )
    run(store, "a", ok=False)
    assert states(store, "b", "c", "waits") == ["cancelled", "cancelled", "blocked"]
    assert store.get("waits").unmet == 1
    (retried,) = store.retry(["a"])
    assert retried.state is State.PENDING
    b, c = store.get("b"), store.get("c")
    assert (b.state, b.unmet, b.cancelled_by, b.last_error) == (State.BLOCKED, 1, None, None)
    assert (c.state, c.unmet) == (State.BLOCKED, 2)
    assert store.get("waits").unmet == 2  # it waits for the new run of a too
    for job_id in ("a", "other", "b", "c", "waits"):
        run(store, job_id)
    assert store.counts()[State.COMPLETED] == 5


def test_a_child_cannot_be_retried_while_its_parent_is_dead(store: Store) -> None:
    store.enqueue([NewJob("true", "a")])
    store.enqueue([NewJob("true", "b", after=("a",))])
    run(store, "a", ok=False)
    before = store.get("b")
    with pytest.raises(InvalidTransition, match="'b' cannot run: parent a is dead"):
        store.retry(["b"], {State.CANCELLED})
    assert store.get("b") == before
    # a bulk rerun of cancelled jobs leaves it where it is, and says it did not rerun it
    assert store.retry_where({State.CANCELLED}) == []
    assert store.get("b") == before
    # retried with its parent, it waits for the parent's new run
    retried = store.retry_where({State.DEAD, State.CANCELLED})
    assert {job.id: job.state for job in retried} == {"a": State.PENDING, "b": State.BLOCKED}


def test_parents_must_exist_and_nothing_is_written_otherwise(store: Store) -> None:
    store.enqueue([NewJob("true", "a")])
    with pytest.raises(NotFound, match=r"no job with id 'nope' to wait for \(after of job 'c'\)"):
        store.enqueue([NewJob("true", "b"), NewJob("true", "c", after=("a", "nope"))])
    with pytest.raises(NotFound, match="group 'empty' has no jobs"):
        store.enqueue([NewJob("true", "d", after_group="empty")])
    with pytest.raises(InvalidInput, match="names itself"):
        store.enqueue([NewJob("true", "e", after=("e",))])
    with pytest.raises(InvalidInput, match="comes after it in the batch"):
        store.enqueue([NewJob("true", "f", after=("g",)), NewJob("true", "g")])
    assert [job.id for job in store.jobs()] == ["a"]
    assert store.relatives("a").children == {}


def test_a_child_of_finished_parents_starts_where_they_say(store: Store) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "b")])
    run(store, "a")
    run(store, "b", ok=False)
    ok, cancelled, any_ = store.enqueue(
        [
            NewJob("true", "ok", after=("a",)),
            NewJob("true", "no", after=("a", "b")),
            NewJob("true", "any", after=("b",), after_rule=Rule.ANY),
        ]
    )
    assert ok.state is State.PENDING and any_.state is State.PENDING
    assert (cancelled.state, cancelled.last_error) == (State.CANCELLED, "parent b is dead")


def test_parents_in_the_same_batch_and_a_fan_in_after_a_group(store: Store) -> None:
    grid = [NewJob("true", f"g{n}", group="grid") for n in range(500)]
    (_, *_, then) = store.enqueue([*grid, NewJob("true", "then", after_group="grid")])
    assert (then.state, then.unmet) == (State.BLOCKED, 500)
    assert len(store.relatives("then").parents) == 500
    for n in range(500):
        assert store.get("then").state is State.BLOCKED
        run(store, f"g{n}")
    assert store.get("then").state is State.PENDING
    run(store, "then")


def test_cancelling_or_burying_a_parent_ends_its_dependents(store: Store) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "b")])
    store.enqueue([NewJob("true", "x", after=("a",)), NewJob("true", "y", after=("b",))])
    store.enqueue([NewJob("true", "z", after=("x",))])
    assert store.cancel(["a"]) == {"a": State.CANCELLED}
    assert states(store, "x", "z") == ["cancelled", "cancelled"]
    store.bury(["y"])  # a blocked job can go to the DLQ by hand, like a pending one
    assert states(store, "y") == ["dead"]
    assert store.cancel(None) == {"b": State.CANCELLED}


def test_a_running_parent_that_is_cancelled_cancels_its_dependents(store: Store) -> None:
    store.enqueue([NewJob("true", "a")])
    store.enqueue([NewJob("true", "b", after=("a",))])
    claim = store.claim("w", 30)
    assert claim is not None
    assert store.cancel(["a"]) == {"a": State.PROCESSING}
    stopped = RunResult(Outcome.CANCELLED, None, "cancelled by request")
    assert store.finish(claim.fence, stopped, Transition(State.DEAD, 0, "cancelled by request"))
    assert states(store, "a", "b") == ["cancelled", "cancelled"]


def test_a_lost_lease_that_ends_the_job_settles_its_dependents_once(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([NewJob("true", "a", max_retries=0)])
    store.enqueue([NewJob("true", "b", after=("a",))])
    claim = store.claim("w", 0)
    assert claim is not None
    clock.now += 1
    lost = RunResult(Outcome.LOST, None, "lease expired")
    assert store.finish(claim.fence, lost, DEAD, only_if_expired=True)
    assert not store.finish(claim.fence, OK, DONE)  # the old worker's late finish is fenced off
    assert states(store, "a", "b") == ["dead", "cancelled"]


def test_show_and_graph_read_the_edges(store: Store) -> None:
    store.enqueue([NewJob("true", "a", group="g"), NewJob("true", "b", group="g")])
    store.enqueue([NewJob("true", "c", after=("b", "a"), after_rule=Rule.ANY)])
    relatives = store.relatives("c")
    assert relatives.parents == {"a": State.PENDING, "b": State.PENDING}
    assert store.relatives("a").children == {"c": State.BLOCKED}
    assert store.edges("g") == [
        Edge("a", "c", State.PENDING, State.BLOCKED, Rule.ANY),
        Edge("b", "c", State.PENDING, State.BLOCKED, Rule.ANY),
    ]
    assert store.edges("other") == [] and len(store.edges()) == 2
    with pytest.raises(NotFound):
        store.relatives("nope")


def test_pruning_keeps_a_pruned_parent_visible_to_its_children(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([NewJob("true", "a")])
    store.enqueue([NewJob("true", "b", after=("a",))])
    store.enqueue([NewJob("true", "c", after=("a",), priority=-1)])
    run(store, "a")
    run(store, "b")
    assert store.prune(store.now(), {State.COMPLETED}) == 0
    clock.now += 1
    assert store.prune(store.now(), {State.COMPLETED}) == 2
    assert store.relatives("c").parents == {"a": None}  # pruned
    assert store.edges() == [Edge("a", "c", None, State.PENDING, Rule.OK)]
    run(store, "c")
    clock.now += 1
    assert store.prune(store.now(), {State.COMPLETED}) == 1
    assert store.edges() == []


def test_parents_finishing_at_the_same_moment_release_the_child_once(
    queue_target: str,
) -> None:
    """Many parents claimed by as many threads (each its own connection), finished at once:
    the child goes from blocked to pending exactly once, and is claimed exactly once."""
    parents = 12
    store = open_store(queue_target)
    try:
        for round_ in range(3):
            ids = [f"r{round_}p{n}" for n in range(parents)]
            store.enqueue([NewJob("true", job_id) for job_id in ids])
            store.enqueue([NewJob("true", f"r{round_}child", after=tuple(ids))])
            claims = [store.claim(f"w{n}", 30) for n in range(parents)]
            assert finish_at_once(store, [claim for claim in claims if claim]) == []
            child = store.get(f"r{round_}child")
            assert (child.state, child.unmet) == (State.PENDING, 0)
            claim = store.claim("w", 30)
            assert claim is not None and claim.job.id == f"r{round_}child"
            assert store.finish(claim.fence, OK, DONE)
            assert store.claim("w", 30) is None
    finally:
        store.close()


def test_a_copied_queue_keeps_its_dependencies(
    store: Store, clock: FakeClock, new_queue: Callable[[], str]
) -> None:
    store.enqueue([NewJob("true", "a"), NewJob("true", "b")])
    store.enqueue([NewJob("true", "c", after=("a", "b"))])
    run(store, "a")
    pairs = [(edge.parent, edge.child) for edge in store.edges()]
    copy = QueueCopy(list(reversed(store.jobs())), store.attempts(), store.config(), pairs)
    target = open_store(new_queue(), clock=clock)
    try:
        target.import_copy(copy)
        assert target.edges() == store.edges()
        assert (target.get("c").state, target.get("c").unmet) == (State.BLOCKED, 1)
        run(target, "b")
        assert target.get("c").state is State.PENDING
    finally:
        target.close()


def finish_at_once(store: Store, claims: list[Claim]) -> list[BaseException]:
    """Finish ``claims`` (completed) from a thread each, released together; the errors."""

    def finish(claim: Claim) -> Callable[[], object]:
        def act() -> None:
            assert store.finish(claim.fence, OK, DONE), f"{claim.job.id}: fenced off"

        return act

    return at_once(store, *(finish(claim) for claim in claims))


def at_once(store: Store, *actions: Callable[[], object]) -> list[BaseException]:
    """Run ``actions`` from a thread each, released together; the errors they raised."""
    start = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def act(action: Callable[[], object]) -> None:
        try:
            start.wait()
            action()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.release()

    threads = [threading.Thread(target=act, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_a_bulk_retry_leaves_jobs_whose_parent_is_still_dead_untouched(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([NewJob("true", "p", max_retries=0), NewJob("true", "q")])
    store.enqueue([NewJob("true", "later", priority=-1)])  # never claimed in this test
    store.enqueue([NewJob("true", "c", group="b", after=("p",))])
    store.enqueue([NewJob("true", "g", after=("c", "later"), after_rule=Rule.ANY)])
    store.enqueue([NewJob("true", "ran", group="b", after=("q",), max_retries=0)])
    run(store, "p", ok=False)
    assert (store.get("c").state, store.get("g").unmet) == (State.CANCELLED, 1)
    run(store, "q")
    run(store, "ran", ok=False)
    store.retry(["q"], {State.COMPLETED})  # "ran" is dead: it ran after q, then failed
    before = {job.id: job for job in store.jobs()}
    clock.now += 5
    assert store.retry_where({State.CANCELLED}, JobFilter(group="b")) == []
    assert store.get("c") == before["c"]  # not written: not moved, not reported
    assert store.get("g") == before["g"]  # and its "any" child was not counted off twice
    (again,) = store.retry_where({State.DEAD}, JobFilter(group="b"))
    assert (again.id, again.state) == ("ran", State.BLOCKED)  # waits for q's new run
    assert store.get("p") == before["p"]


def test_a_retry_racing_another_parents_finish_leaves_no_child_behind(
    queue_target: str,
) -> None:
    """c waits for x (dead, so c is cancelled) and p (running). Retrying x while p completes:
    whichever commits first, c ends blocked on x alone, and runs once x completes."""
    store = open_store(queue_target)
    try:
        for n in range(8):
            x, p, c = f"x{n}", f"p{n}", f"c{n}"
            store.enqueue([NewJob("false", x, max_retries=0), NewJob("true", p)])
            store.enqueue([NewJob("true", c, after=(x, p))])
            failing = store.claim("w", 30)
            assert failing is not None and failing.job.id == x
            assert store.finish(failing.fence, FAIL, DEAD)
            running = store.claim("w", 30)
            assert running is not None and running.job.id == p
            errors = at_once(
                store,
                lambda x=x: store.retry([x]),  # type: ignore[misc]
                lambda fence=running.fence: store.finish(fence, OK, DONE),  # type: ignore[misc]
            )
            assert errors == []
            assert (store.get(c).state, store.get(c).unmet) == (State.BLOCKED, 1), n
            run(store, x)
            assert store.get(c).state is State.PENDING
            run(store, c)
    finally:
        store.close()


def test_a_bulk_retry_leaves_a_whole_cancelled_chain_alone(store: Store, clock: FakeClock) -> None:
    store.enqueue([NewJob("true", "p", max_retries=0)])
    store.enqueue([NewJob("true", "c", after=("p",))])
    store.enqueue([NewJob("true", "d", after=("c",))])
    store.enqueue([NewJob("true", "e", after=("d",), after_rule=Rule.ANY)])
    store.enqueue([NewJob("true", "later", priority=-1)])
    store.enqueue([NewJob("true", "f", after=("d", "later"), after_rule=Rule.ANY)])
    run(store, "p", ok=False)
    run(store, "e")  # "any": d's end let it go
    before = {job.id: job for job in store.jobs()}
    assert (before["c"].state, before["d"].state, before["f"].unmet) == (
        State.CANCELLED,
        State.CANCELLED,
        1,
    )
    clock.now += 5  # (a write would show in the times)
    assert store.retry_where({State.CANCELLED}) == []
    assert {job.id: job for job in store.jobs()} == before  # nothing written, f counted once
    store.retry(["p"])
    assert [store.get(j).state for j in ("c", "d")] == [State.BLOCKED, State.BLOCKED]
    assert store.get("f").unmet == 2


def test_a_new_job_with_a_pruned_parents_id_has_none_of_its_children(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([NewJob("true", "p"), NewJob("true", "q", priority=-1)])
    store.enqueue([NewJob("true", "x", after=("p", "q"))])
    run(store, "p")
    clock.now += 1
    assert store.prune(store.now(), {State.COMPLETED}) == 1
    store.enqueue([NewJob("true", "p", priority=1)])  # the id again, another job
    store.enqueue([NewJob("true", "y", after=("p",))])
    run(store, "p")
    assert (store.get("x").state, store.get("x").unmet) == (State.BLOCKED, 1)  # still q's
    assert store.relatives("p").children == {"y": State.PENDING}


def test_a_bulk_retry_blocks_an_any_job_whose_parent_it_re_arms(store: Store) -> None:
    store.enqueue([NewJob("true", "p", max_retries=0)])
    store.enqueue([NewJob("true", "q", after=("p",))])
    store.enqueue([NewJob("false", "r", after=("q",), after_rule=Rule.ANY, max_retries=0)])
    run(store, "p", ok=False)  # q is cancelled, which lets r go
    run(store, "r", ok=False)
    retried = {job.id: job.state for job in store.retry_where({State.DEAD})}
    assert retried == {"p": State.PENDING, "r": State.BLOCKED}
    assert (store.get("q").state, store.get("r").state) == (State.BLOCKED, State.BLOCKED)
