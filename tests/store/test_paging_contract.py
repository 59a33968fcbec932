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
from queuectl.store.base import Store, first_started
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


def run(store: Store, clock: FakeClock, runtime: float, outcome: Outcome | None) -> None:
    """Claim the next job and run it for ``runtime`` seconds, finishing it with ``outcome``
    (None: left running)."""
    claim = store.claim("w", 3600)
    assert claim is not None
    clock.now += runtime
    if outcome is not None:
        result = RunResult(outcome, 0 if outcome is Outcome.COMPLETED else 1, None)
        state = State.COMPLETED if outcome is Outcome.COMPLETED else State.DEAD
        assert store.finish(claim.fence, result, Transition(state))


def test_attempt_history_counts_outcomes_buckets_and_runtimes(
    store: Store, clock: FakeClock
) -> None:
    start = datetime.fromtimestamp(clock.now, UTC)
    store.enqueue([NewJob("true", f"j{n}", max_retries=0) for n in range(4)])
    runs = [(0.5, Outcome.COMPLETED), (3.0, Outcome.COMPLETED), (20.0, Outcome.COMPLETED)]
    runs.append((1.0, Outcome.FAILED))
    for runtime, outcome in runs:
        run(store, clock, runtime, outcome)
        clock.now += 60  # one run a minute
    since = start + timedelta(seconds=60)
    history = store.attempt_history(since, 60, [1.0, 5.0], started=start, newest=100)
    # the first run finished before `since`: not counted
    assert history.by_outcome == {"completed": 2, "failed": 1}
    assert history.recent == {0: {"completed": 1}, 1: {"completed": 1}, 2: {"failed": 1}}
    assert history.runtimes == [1, 1, 1]
    assert history.runtime_sum == pytest.approx(23.5)
    every = store.attempt_history(start, 60, [1.0], started=start, newest=100)
    assert (every.recent[0], every.runtimes) == ({"completed": 1}, [1, 2])
    empty = store.attempt_history(since, 60, [1.0], started=since + timedelta(hours=1), newest=0)
    assert (empty.by_outcome, empty.recent, empty.runtimes) == ({}, {}, [0, 0])


def test_attempt_history_reads_only_the_newest_attempts(store: Store, clock: FakeClock) -> None:
    """Throughput: of the attempts started since ``started`` only (found by their ids);
    runtimes: of the completed ones among the ``newest`` attempts, a running one included."""
    first = datetime.fromtimestamp(clock.now, UTC)
    store.enqueue([NewJob("true", f"j{n}", max_retries=0) for n in range(6)])
    run(store, clock, 600.0, Outcome.COMPLETED)  # a long run, started first
    for _ in range(3):
        run(store, clock, 2.0, Outcome.COMPLETED)
    run(store, clock, 1.0, Outcome.FAILED)
    run(store, clock, 0.0, None)  # running
    now = datetime.fromtimestamp(clock.now, UTC)
    since = now - timedelta(hours=1)
    every = store.attempt_history(since, 60, [1.0, 5.0, 1000.0], started=first, newest=100)
    assert every.by_outcome == {"completed": 4, "failed": 1}
    assert every.runtimes == [0, 3, 1, 0]
    later = first + timedelta(seconds=1)  # the long run started before: left out
    recent = store.attempt_history(since, 60, [1.0, 5.0, 1000.0], started=later, newest=3)
    assert recent.by_outcome == {"completed": 3, "failed": 1}
    # the newest 3: the running one, the failed one and one completed in 2 s
    assert recent.runtimes == [0, 1, 0, 0]
    assert recent.runtime_sum == pytest.approx(2.0)
    none = store.attempt_history(since, 60, [1.0], started=now + timedelta(seconds=1), newest=1)
    assert (none.by_outcome, none.runtimes) == ({}, [0, 0])


def test_the_first_attempt_started_since_is_found_by_a_binary_search() -> None:
    starts = {2: 10.0, 3: 11.0, 7: 20.0, 8: 20.0, 40: 35.0}  # ids with gaps (pruned jobs)
    reads: list[int] = []

    def first_from(n: int) -> tuple[int, float] | None:
        reads.append(n)
        found = [i for i in sorted(starts) if i >= n]
        return (found[0], starts[found[0]]) if found else None

    for since in (0.0, 10.0, 10.5, 20.0, 21.0, 35.0, 36.0):
        low = first_started(first_from, 40, since)
        # the ids from `low` on are exactly the attempts started since
        assert [i for i in starts if i >= low] == [i for i in starts if starts[i] >= since]
    reads.clear()
    assert first_started(first_from, 40, 99.0) == 41
    assert reads == [40]  # the newest started before: one read
    assert first_started(lambda n: None, 0, 1.0) == 1
