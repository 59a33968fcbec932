"""Following a job's output, on a real SQLite queue whose runs the test drives by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.errors import NotFound
from queuectl.follow import Chunk, exit_status, follow
from queuectl.model import Attempt, NewJob, Outcome, RunResult, State, Transition
from queuectl.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "q.db")
    yield s
    s.close()


def steps(*actions: Callable[[], object]) -> Callable[[float], None]:
    """A ``sleep`` that performs the next action each time the follower waits."""
    pending = list(actions)

    def sleep(seconds: float) -> None:
        assert pending, "the follower waited once more than the test expected"
        pending.pop(0)()

    return sleep


def collect(updates: Iterator[Chunk | Attempt]) -> tuple[bytes, bytes, Attempt | None]:
    out, err, end = b"", b"", None
    for update in updates:
        if isinstance(update, Chunk):
            if update.stream == "stdout":
                out += update.data
            else:
                err += update.data
        else:
            end = update
    return out, err, end


def test_prints_what_is_new_at_each_read_and_notes_what_was_not_kept(store: SqliteStore) -> None:
    store.enqueue([NewJob("x", id="j")])
    claim = store.claim("w", 30)
    assert claim is not None
    fence = claim.fence

    def report(data: bytes, total: int) -> Callable[[], object]:
        return lambda: store.record_output(
            fence, RunResult(Outcome.FAILED, None, None, data, b"", total, 0)
        )

    def finish() -> object:
        result = RunResult(Outcome.FAILED, 3, "exit code 3", b"jklm", b"bye\n", 13, 4)
        return store.finish(fence, result, Transition(State.DEAD))

    # the tail keeps 4 bytes: "abcd", then "efgh" (8 in all), then 13 in all ending "jklm"
    sleep = steps(report(b"abcd", 4), report(b"efgh", 8), finish)
    out, err, end = collect(follow(store, "j", sleep=sleep))
    assert out == b"abcdefgh[... 1 bytes not kept (output_max_bytes) ...]\njklm"
    assert err == b"bye\n"
    assert end is not None and exit_status(end) == 3


def test_a_waiting_job_is_followed_into_its_next_run(store: SqliteStore) -> None:
    store.enqueue([NewJob("x", id="j", max_retries=1)])
    first = store.claim("w", 30)
    assert first is not None
    old = RunResult(Outcome.FAILED, 1, "exit code 1", b"old run\n", b"", 8, 0)
    store.finish(first.fence, old, Transition(State.FAILED, 0.0, "exit code 1"))
    new = RunResult(Outcome.COMPLETED, 0, None, b"new run\n", b"", 8, 0)
    claims: list[Any] = []
    sleep = steps(
        lambda: None,  # nothing new yet: the old run is not shown
        lambda: claims.append(store.claim("w", 30)),
        lambda: store.finish(claims[0].fence, new, Transition(State.COMPLETED)),
    )
    out, _, end = collect(follow(store, "j", sleep=sleep))
    assert out == b"new run\n" and end is not None and end.number == 2


def test_a_finished_job_shows_its_last_run_and_one_that_never_ran_is_an_error(
    store: SqliteStore,
) -> None:
    store.enqueue([NewJob("x", id="done"), NewJob("x", id="never")])
    claim = store.claim("w", 30)
    assert claim is not None and claim.job.id == "done"
    result = RunResult(Outcome.COMPLETED, 0, None, b"hi\n", b"", 3, 0)
    store.finish(claim.fence, result, Transition(State.COMPLETED))
    assert collect(follow(store, "done", sleep=steps()))[0] == b"hi\n"
    store.cancel(["never"])
    with pytest.raises(NotFound, match="is cancelled and never ran"):
        follow(store, "never")
    with pytest.raises(NotFound, match="no job with id 'ghost'"):
        follow(store, "ghost")


def test_a_job_cancelled_while_it_is_waited_for_ends_the_follow(store: SqliteStore) -> None:
    store.enqueue([NewJob("x", id="j")])
    updates = follow(store, "j", sleep=steps(lambda: store.cancel(["j"])))
    with pytest.raises(NotFound, match="ended without running again"):
        collect(updates)
