"""The store contract for groups, tags, params and results: filters on every listing and bulk
action, counts per group kept by the store, and results with their latest attempt.

Every store (SQLite and PostgreSQL) must pass this module, like ``test_contract.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from queuectl.errors import NotFound
from queuectl.model import JobFilter, NewJob, Outcome, QueueCopy, RunResult, State, Transition
from queuectl.model.job import EVERY_JOB
from queuectl.store import open_store
from queuectl.store import rows as rows_module
from queuectl.store.base import Store
from queuectl.store.rows import Table
from tests.store.test_contract import FakeClock

DONE = Transition(State.COMPLETED)
DEAD = Transition(State.DEAD, 0, "exit code 1")


@pytest.fixture
def store(queue_target: str) -> Iterator[Store]:
    s = open_store(queue_target, clock=FakeClock())
    yield s
    s.close()


def sweep(store: Store) -> None:
    """Two groups and a job of none: 'a' has a0..a3 (a0, a1 tagged 'x'), 'b' has b0, b1."""
    store.enqueue(
        [
            NewJob("true", f"a{n}", group="a", tags=("x",) if n < 2 else (), params={"n": n})
            for n in range(4)
        ]
        + [NewJob("true", f"b{n}", group="b", params={"n": n, "s": "v"}) for n in range(2)]
        + [NewJob("true", "lone", tags=("x", "y"))]
    )


def finish_next(store: Store, result: RunResult, transition: Transition = DONE) -> str:
    claimed = store.claim("w", 30)
    assert claimed is not None
    assert store.finish(claimed.fence, result, transition)
    return claimed.job.id


def test_jobs_keep_group_tags_and_params(store: Store) -> None:
    sweep(store)
    job = store.get("b1")
    assert (job.group, job.tags, dict(job.params)) == ("b", (), {"n": 1, "s": "v"})
    assert store.get("lone").tags == ("x", "y")
    assert list(store.get("a0").params) == ["n"]


def test_listings_filter_by_group_and_tag(store: Store) -> None:
    sweep(store)
    assert [j.id for j in store.jobs(where=JobFilter(group="a"))] == ["a3", "a2", "a1", "a0"]
    assert [j.id for j in store.jobs(where=JobFilter(tag="x"))] == ["lone", "a1", "a0"]
    both = JobFilter(group="a", tag="x")
    assert [j.id for j in store.jobs(State.PENDING, 1, both)] == ["a1"]
    assert store.jobs(where=JobFilter(group="nope")) == []
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None))  # a0
    assert [a.job_id for a in store.attempts(where=JobFilter(tag="x"))] == ["a0"]
    assert store.attempts(where=JobFilter(group="b")) == []


def test_counts_per_group_follow_every_change(store: Store) -> None:
    sweep(store)
    zero = {state: 0 for state in State}
    assert store.group_counts() == {"a": zero | {State.PENDING: 4}, "b": zero | {State.PENDING: 2}}
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None))  # a0
    finish_next(store, RunResult(Outcome.FAILED, 1, "exit code 1"), DEAD)  # a1
    store.cancel(["b0"])
    assert store.counts(JobFilter(group="a")) == zero | {
        State.PENDING: 2,
        State.COMPLETED: 1,
        State.DEAD: 1,
    }
    assert store.counts(JobFilter(group="b")) == zero | {State.PENDING: 1, State.CANCELLED: 1}
    assert store.counts(JobFilter(tag="x")) == zero | {
        State.PENDING: 1,
        State.COMPLETED: 1,
        State.DEAD: 1,
    }
    assert sum(store.counts().values()) == 7
    store.prune(store.now() + timedelta(seconds=1), (State.COMPLETED, State.CANCELLED))
    assert store.group_counts()["b"] == zero | {State.PENDING: 1}
    assert store.group_counts()["a"][State.COMPLETED] == 0
    store.cancel(None, JobFilter(group="b"))
    store.prune(store.now() + timedelta(seconds=1), (State.CANCELLED,))
    assert "b" not in store.group_counts()
    if hasattr(store, "_run"):  # PostgreSQL: the emptied group's count rows are deleted too
        assert store._run("SELECT 1 FROM queuectl.group_counts WHERE job_group = 'b'") == []


def test_cancel_and_retry_by_filter(store: Store) -> None:
    sweep(store)
    running = store.claim("w", 30)
    assert running is not None and running.job.id == "a0"
    # Waiting jobs only, unless running ones are asked for too.
    assert store.cancel(None, JobFilter(group="a", tag="x")) == {"a1": State.CANCELLED}
    assert store.cancel(None, JobFilter(group="a"), running=True) == {
        "a0": State.PROCESSING,
        "a2": State.CANCELLED,
        "a3": State.CANCELLED,
    }
    assert store.cancel_requests([running.fence]) == {running.fence.attempt_id}
    assert store.get("b0").state is State.PENDING  # another group is left alone
    stopped = RunResult(Outcome.CANCELLED, None, "cancelled by request")
    assert store.finish(running.fence, stopped, Transition(State.FAILED, 1, "cancelled"))
    retried = store.retry_where({State.DEAD, State.CANCELLED}, JobFilter(group="a"))
    assert sorted(job.id for job in retried) == ["a0", "a1", "a2", "a3"]
    assert all(job.attempts == 0 and job.state is State.PENDING for job in retried)
    assert store.cancel(None, JobFilter(group="nope"), running=True) == {}


def table_rows(table: Table) -> dict[str, dict[str, Any]]:
    """A ``Table``'s rows by their first column (the job id), each a mapping of columns."""
    first = next(iter(table))
    found = (dict(zip(table, row, strict=True)) for row in zip(*table.values(), strict=True))
    return {row[first]: row for row in found}


def test_results_hold_params_state_and_the_latest_result(store: Store) -> None:
    sweep(store)
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None, result={"loss": 0.25}))  # a0
    failed = RunResult(Outcome.FAILED, 1, "exit code 1", result={"partial": True})
    finish_next(store, failed, Transition(State.FAILED, 60, "exit code 1"))  # a1
    running = store.claim("w", 30)
    assert running is not None and running.job.id == "a2"
    rows = table_rows(store.result_table(JobFilter(group="a")))
    assert list(rows) == ["a0", "a1", "a2", "a3"]  # enqueue order
    a0 = rows["a0"]
    assert (a0["job_group"], a0["state"], a0["attempts"]) == ("a", "completed", 1)
    assert json.loads(a0["result"]) == {"loss": 0.25} and json.loads(a0["params"]) == {"n": 0}
    (attempt,) = store.attempts("a0")
    assert attempt.finished_at is not None
    assert a0["started_at"] == pytest.approx(attempt.started_at.timestamp(), abs=1e-6)
    assert a0["finished_at"] == pytest.approx(attempt.finished_at.timestamp(), abs=1e-6)
    assert json.loads(rows["a1"]["result"]) == {"partial": True}
    a2 = rows["a2"]
    assert (a2["state"], a2["finished_at"], a2["result"]) == ("processing", None, None)
    assert isinstance(a2["started_at"], float)
    a3 = rows["a3"]
    assert (a3["attempts"], a3["started_at"], a3["result"]) == (0, None, None)
    assert [a.result for a in store.attempts("a0")] == [{"loss": 0.25}]
    assert len(store.result_table()["id"]) == 7
    assert store.result_table(JobFilter(group="nope")) == {
        column[2:]: [] for column in rows_module.RESULT_TABLE
    }


def test_job_and_attempt_tables_hold_what_the_records_hold(store: Store) -> None:
    sweep(store)
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None))  # a0
    finish_next(store, RunResult(Outcome.FAILED, 2, "exit code 2"), Transition(State.DEAD))
    assert store.claim("w", 30) is not None  # a2 runs
    assert store.cancel(["a2"], running=True) == {"a2": State.PROCESSING}
    for where in (EVERY_JOB, JobFilter(group="a"), JobFilter(tag="x")):
        for state, limit in ((None, None), (State.PENDING, None), (None, 2)):
            table, jobs = store.job_table(state, limit, where), store.jobs(state, limit, where)
            assert table["id"] == [job.id for job in jobs]
            for job, row in zip(jobs, table_rows(table).values(), strict=True):
                assert row["command"] == job.command and row["state"] == job.state.value
                assert row["job_group"] == job.group and row["attempts"] == job.attempts
                assert (json.loads(row["tags"]) if row["tags"] else []) == list(job.tags)
                assert row["created_at"] == pytest.approx(job.created_at.timestamp(), abs=1e-6)
                lease = row["lease_until"]
                assert (lease is None) == (job.lease_until is None)
                assert bool(row["cancel_requested"]) == job.cancel_requested
        table, attempts = store.attempt_table(where=where), store.attempts(where=where)
        assert table["job_id"] == [a.job_id for a in attempts]
        assert table["number"] == [a.number for a in attempts]
        assert table["outcome"] == [a.outcome and a.outcome.value for a in attempts]
        assert table["exit_code"] == [a.exit_code for a in attempts]
        assert table["command"] == ["true"] * len(attempts)
    assert store.attempt_table("a1")["error"] == ["exit code 2"]
    with pytest.raises(NotFound):
        store.attempt_table("nope")


def test_a_copy_keeps_groups_tags_params_and_results(store: Store, queue_target: str) -> None:
    sweep(store)
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None, result={"acc": 0.9}))
    copy = QueueCopy(store.jobs(), store.attempts(), store.config())
    store.prune(store.now() + timedelta(seconds=1), (State.COMPLETED,))
    for job in store.jobs():
        store.cancel([job.id])
    store.prune(store.now() + timedelta(seconds=1), (State.CANCELLED,))
    store.import_copy(copy)
    assert store.get("a1").tags == ("x",) and store.get("b1").params == {"n": 1, "s": "v"}
    assert store.attempts("a0")[0].result == {"acc": 0.9}
    assert store.group_counts()["a"][State.COMPLETED] == 1


def test_metrics_of_one_group(store: Store) -> None:
    sweep(store)
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None))  # a0
    summary = store.attempt_summary(store.now(), JobFilter(group="a"))
    assert summary.by_outcome == {Outcome.COMPLETED: 1}
    assert store.attempt_summary(store.now(), JobFilter(group="b")).by_outcome == {}


def test_waiting_jobs_in_the_order_pools_take_them(store: Store) -> None:
    store.enqueue(
        [
            NewJob("true", "later", delay=3600),
            NewJob("true", "first"),
            NewJob("true", "urgent", priority=5),
            NewJob("true", "second", group="g"),
            NewJob("true", "third", group="g"),
        ]
    )
    running = store.claim("w", 30)  # urgent: not waiting any more
    assert running is not None and running.job.id == "urgent"
    assert [job.id for job in store.waiting(10)] == ["first", "second", "third", "later"]
    assert [job.id for job in store.waiting(2)] == ["first", "second"]
    assert [job.id for job in store.waiting(10, JobFilter(group="g"))] == ["second", "third"]


def test_frames_hold_the_records_values_to_the_microsecond(store: Store, queue_target: str) -> None:
    """The DataFrames read columns (times as epoch seconds) on every store: each value is the
    one the model object holds."""
    import queuectl

    sweep(store)
    finish_next(store, RunResult(Outcome.COMPLETED, 0, None, result={"loss": 0.25}))
    finish_next(store, RunResult(Outcome.FAILED, 2, "exit code 2"), Transition(State.DEAD))
    assert store.claim("w", 30) is not None
    with queuectl.connect(queue_target) as queue:
        jobs, frame = {job.id: job for job in store.jobs()}, queue.jobs()
        assert list(frame.index) == list(jobs)
        for job_id, job in jobs.items():
            row = frame.loc[job_id]
            assert row["created_at"].to_pydatetime() == job.created_at
            assert row["run_at"].to_pydatetime() == job.run_at
            assert (row["lease_until"] is pd.NaT) == (job.lease_until is None)
            assert row["tags"] == job.tags and row["state"] == job.state.value
        attempts, history = store.attempts(), queue.attempts()
        assert history["attempt"].tolist() == [a.number for a in attempts]
        assert history["started_at"].tolist() == [pd.Timestamp(a.started_at) for a in attempts]
        durations = history["duration"].tolist()
        assert durations[:2] == [a.duration for a in attempts[:2]] and pd.isna(durations[2])
        results = queue.results(group="a")
        assert results.loc["a0", "loss"] == 0.25 and results.loc["a0", "n"] == 0
        assert results.loc["a0", "duration"] == attempts[0].duration
