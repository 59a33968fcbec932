"""The DataFrame contract: fixed columns and dtypes, also when empty."""

from __future__ import annotations

from typing import cast

import pandas as pd

import queuectl
from queuectl import frames
from queuectl.model.metrics import AttemptSummary, compute

UTC_NS = "datetime64[us, UTC]"


def test_jobs_frames_have_fixed_dtypes_full_or_empty(queue: queuectl.Queue) -> None:
    empty = queue.jobs()
    queue.enqueue("echo one", id="a")
    queue.enqueue("echo two", id="b", priority=3)
    full = queue.jobs()
    assert list(full.index) == ["b", "a"]  # newest first
    assert full.index.name == "id" and str(full.index.dtype) == "string"
    assert full.dtypes.equals(empty.dtypes) and list(full.columns) == list(empty.columns)
    assert str(full.dtypes["command"]) == "string"
    assert str(full.dtypes["attempts"]) == "Int64" and str(full.dtypes["priority"]) == "Int64"
    for column in ("run_at", "created_at", "updated_at", "lease_until"):
        assert str(full.dtypes[column]) == UTC_NS
    state = full.dtypes["state"]
    assert isinstance(state, pd.CategoricalDtype) and state.ordered
    assert list(state.categories) == [
        "blocked",
        "pending",
        "processing",
        "failed",
        "completed",
        "dead",
        "cancelled",
    ]
    assert full["lease_until"].isna().all() and full["worker_id"].isna().all()


def test_jobs_frames_carry_group_and_tags_after_the_command(queue: queuectl.Queue) -> None:
    empty = queue.jobs()
    queue.enqueue("true", id="t", group="sweep", tags=["gpu", "nightly"])
    queue.enqueue("true", id="u")
    full = queue.jobs()
    assert (
        list(full.columns[:4]) == list(empty.columns[:4]) == ["command", "group", "tags", "state"]
    )
    assert full.dtypes.equals(empty.dtypes)
    assert str(full.dtypes["group"]) == "string" and str(full.dtypes["tags"]) == "object"
    assert full.loc["t", "group"] == "sweep" and full.loc["u", "group"] is pd.NA
    assert full.loc["t", "tags"] == ("gpu", "nightly") and full.loc["u", "tags"] == ()
    assert full[full["tags"].map(lambda tags: "gpu" in tags)].index.tolist() == ["t"]
    assert "params" not in full.columns


def test_attempt_frames_have_fixed_dtypes_full_or_empty(queue: queuectl.Queue) -> None:
    empty = queue.attempts()
    queue.enqueue("exit 2", id="x", max_retries=0)
    queue.start_workers(1)
    queue.wait(timeout=30)
    queue.stop_workers(wait=True)
    full = queue.attempts()
    assert full.dtypes.equals(empty.dtypes) and list(full.columns) == list(empty.columns)
    row = full.iloc[0]
    assert (row.job_id, row.attempt, row.command, row.exit_code) == ("x", 1, "exit 2", 2)
    assert row.outcome == "failed" and row.error == "exit code 2"
    assert str(full.dtypes["exit_code"]) == "Int64"
    assert str(full.dtypes["started_at"]) == UTC_NS and str(full.dtypes["duration"]) == "float64"
    assert full.loc[0, "duration"] == (row.finished_at - row.started_at).total_seconds()


def test_a_running_attempt_has_missing_values_not_floats(queue: queuectl.Queue) -> None:
    queue.enqueue("true", id="r")
    claim = queue.store.claim("w", 30)
    assert claim is not None
    row = queue.attempts().iloc[0]
    assert row.exit_code is pd.NA and pd.isna(row.finished_at) and pd.isna(row.outcome)


def test_metrics_frame_is_one_typed_row(queue: queuectl.Queue) -> None:
    metrics = frames.metrics_frame(compute(AttemptSummary({}, None, None, 0, *[None] * 4)), "q")
    assert list(metrics.index) == ["q"]
    assert metrics.loc["q", "attempts"] == 0
    assert metrics["failure_rate"].isna().tolist() == [True]
    assert str(metrics.dtypes["completed"]) == "Int64"
    assert str(metrics.dtypes["runtime_p95"]) == "float64"


def test_far_future_times_fit(queue: queuectl.Queue) -> None:
    queue.enqueue("true", id="later", run_at="2300-01-01T00:00:00Z")
    run_at = cast(pd.Timestamp, queue.jobs().loc["later", "run_at"])
    assert run_at.year == 2300 and str(run_at.tz) == "UTC"
