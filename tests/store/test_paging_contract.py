"""The store contract of the dashboard's reads, on both stores: keyset pages of jobs, the text
search, and the attempt history of the charts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from queuectl.errors import NotFound
from queuectl.model import NewJob, Outcome, RunResult, State, Transition
from queuectl.model.job import JobFilter
from queuectl.store import open_store
from queuectl.store.base import Store
from tests.store.test_contract import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(queue_target: str, clock: FakeClock) -> Iterator[Store]:
    s = open_store(queue_target, clock=clock)
    yield s
    s.close()


def ids(jobs: list) -> list[str]:  # type: ignore[type-arg]
    return [job.id for job in jobs]


def test_pages_follow_each_other_newest_first_without_gaps(store: Store) -> None:
    store.enqueue([NewJob(f"echo {n}", f"j{n:02}", group="g" if n % 2 else None) for n in range(7)])
    first = store.job_page(None, 3)
    assert ids(first) == ["j06", "j05", "j04"]
    second = store.job_page(None, 3, before=first[-1].id)
    assert ids(second) == ["j03", "j02", "j01"]
    assert ids(store.job_page(None, 3, before=second[-1].id)) == ["j00"]
    assert ids(store.job_page(None, 3, before="j00")) == []
    assert ids(store.job_page(None, None, before="j02")) == ["j01", "j00"]
    # with a filter, the cursor may be a job the filter leaves out
    assert ids(store.job_page(None, 2, JobFilter(group="g"), before="j04")) == ["j03", "j01"]


def test_a_page_of_one_state(store: Store) -> None:
    store.enqueue([NewJob("true", f"j{n}") for n in range(4)])
    store.bury(["j1", "j3"])
    assert ids(store.job_page(State.DEAD, 10)) == ["j3", "j1"]
    assert ids(store.job_page(State.DEAD, 10, before="j3")) == ["j1"]
    assert ids(store.job_page(State.PENDING, 1, before="j3")) == ["j2"]


def test_an_unknown_cursor_is_not_found(store: Store) -> None:
    store.enqueue([NewJob("true", "a")])
    with pytest.raises(NotFound, match="'gone'"):
        store.job_page(None, 10, before="gone")


def test_search_matches_id_or_command_in_either_case_and_takes_wildcards_literally(
    store: Store,
) -> None:
    store.enqueue(
        [
            NewJob("python train.py --lr 0.1", "train-1"),
            NewJob("echo 100%", "pct"),
            NewJob("echo a_b", "under"),
            NewJob("echo axb", "x"),
            NewJob("echo back\\slash", "bs"),
            NewJob("echo other", "TRAIN-2"),
        ]
    )
    assert ids(store.job_page(None, 10, search="train")) == ["TRAIN-2", "train-1"]
    assert ids(store.job_page(None, 10, search="LR 0.1")) == ["train-1"]
    assert ids(store.job_page(None, 10, search="%")) == ["pct"]
    assert ids(store.job_page(None, 10, search="a_b")) == ["under"]
    assert ids(store.job_page(None, 10, search="\\s")) == ["bs"]
    assert ids(store.job_page(None, 1, search="train", before="TRAIN-2")) == ["train-1"]
    assert ids(store.job_page(State.DEAD, 10, search="train")) == []


def test_attempt_history_counts_outcomes_buckets_and_runtimes(
    store: Store, clock: FakeClock
) -> None:
    start = datetime.fromtimestamp(clock.now, UTC)
    store.enqueue([NewJob("true", f"j{n}", max_retries=0) for n in range(4)])
    runs = [(0.5, Outcome.COMPLETED), (3.0, Outcome.COMPLETED), (20.0, Outcome.COMPLETED)]
    runs.append((1.0, Outcome.FAILED))
    for runtime, outcome in runs:
        claim = store.claim("w", 30)
        assert claim is not None
        clock.now += runtime
        result = RunResult(outcome, 0 if outcome is Outcome.COMPLETED else 1, None)
        state = State.COMPLETED if outcome is Outcome.COMPLETED else State.DEAD
        assert store.finish(claim.fence, result, Transition(state))
        clock.now += 60  # one run a minute
    history = store.attempt_history(start + timedelta(seconds=60), 60, [1.0, 5.0])
    assert history.by_outcome == {"completed": 3, "failed": 1}
    # the first run finished before `since`: counted in all, not in a bucket
    assert history.recent == {0: {"completed": 1}, 1: {"completed": 1}, 2: {"failed": 1}}
    assert history.runtimes == [1, 1, 1]
    assert history.runtime_sum == pytest.approx(23.5)
    empty = store.attempt_history(start, 60, [1.0])
    assert (empty.recent[0], empty.runtimes) == ({"completed": 1}, [1, 2])
