"""The results frame: params, fixed columns and flattened results, typed from their values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pytest

from queuectl import frames
from queuectl.frames import RESULT_DTYPES, state_dtype
from queuectl.model import State
from queuectl.model.job import Scalar
from queuectl.store.rows import RESULT_TABLE, json_text

FIXED = ["group", "state", "attempts", "duration"]


Row = dict[str, Any]


def record(
    job_id: str,
    params: Mapping[str, Scalar] | None = None,
    result: Mapping[str, Any] | None = None,
    *,
    state: State = State.COMPLETED,
    duration: float | None = 1.5,
    group: str | None = "sweep",
    attempts: int = 1,
) -> Row:
    """A job's row as a store's ``result_table`` has it (JSON text, epoch seconds)."""
    started = None if duration is None else 1_900_000_000.25
    return {
        "id": job_id,
        "job_group": group,
        "state": state.value,
        "attempts": attempts,
        "params": json_text(params),
        "started_at": started,
        "finished_at": None if started is None or duration is None else started + duration,
        "result": json_text(result),
    }


def results_frame(records: Sequence[Row]) -> pd.DataFrame:
    """The frame of these rows, read as one ``Table``."""
    return frames.results_frame(
        {column[2:]: [row[column[2:]] for row in records] for column in RESULT_TABLE}
    )


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {str(name): str(dtype) for name, dtype in frame.dtypes.items()}


def test_columns_are_params_then_fixed_then_result_keys_in_first_seen_order() -> None:
    frame = results_frame(
        [
            record("a", {"lr": 0.1, "seed": 1}, {"loss": 0.5}),
            record("b", {"seed": 2, "lr": 0.2, "model": "big"}, {"acc": 0.9, "loss": 0.4}),
        ]
    )
    assert list(frame.columns) == ["lr", "seed", "model", *FIXED, "loss", "acc"]
    assert list(frame.index) == ["a", "b"]
    assert frame.index.name == "id" and str(frame.index.dtype) == "string"
    assert frame.loc["b", "model"] == "big" and frame.loc["a", "model"] is pd.NA


def test_param_and_result_dtypes_are_inferred_per_column() -> None:
    frame = results_frame(
        [
            record(
                "a",
                {"seed": 1, "lr": 0.1, "flag": True, "name": "x", "mixed": 1, "text": 1},
                {"steps": 10, "score": 1, "ok": False, "label": "fine"},
            ),
            record(
                "b",
                {"seed": 2, "lr": 0.2, "flag": False, "name": "y", "mixed": 0.5, "text": "a"},
                {"steps": 20, "score": 2.5, "ok": True, "label": 3},
            ),
        ]
    )
    assert dtypes(frame) == {
        "seed": "Int64",
        "lr": "float64",
        "flag": "boolean",
        "name": "string",
        "mixed": "float64",
        "text": "string",
        "group": "string",
        "state": "category",
        "attempts": "Int64",
        "duration": "float64",
        "steps": "Int64",
        "score": "float64",
        "ok": "boolean",
        "label": "string",
    }
    assert frame["mixed"].tolist() == [1.0, 0.5]
    assert frame["text"].tolist() == ["1", "a"]  # the int through str
    assert frame["label"].tolist() == ["fine", "3"]
    assert frame["seed"].tolist() == [1, 2] and frame["ok"].tolist() == [False, True]


def test_booleans_mixed_with_numbers_are_text_not_numbers() -> None:
    frame = results_frame([record("a", {"x": True}), record("b", {"x": 2})])
    assert str(frame.dtypes["x"]) == "string"
    assert frame["x"].tolist() == ["True", "2"]


def test_state_is_the_ordered_lifecycle_categorical() -> None:
    frame = results_frame([record("a", state=State.FAILED), record("b", state=State.PENDING)])
    assert frame.dtypes["state"] == state_dtype() and frame.dtypes["state"].ordered
    assert frame["state"].tolist() == ["failed", "pending"]
    assert frame["attempts"].tolist() == [1, 1]


def test_nested_objects_are_flattened_with_dots() -> None:
    frame = results_frame(
        [
            record("a", result={"loss": {"train": 0.1, "val": {"top1": 0.2}}, "acc": 0.9}),
            record("b", result={"acc": 0.8, "loss": {"val": {"top5": 0.7}}, "extra": {}}),
        ]
    )
    assert list(frame.columns) == [*FIXED, "loss.train", "loss.val.top1", "loss.val.top5", "acc"]
    assert frame["loss.train"].isna().tolist() == [False, True]
    assert frame.loc["a", "loss.train"] == 0.1 and frame.loc["b", "loss.val.top5"] == 0.7
    assert str(frame.dtypes["loss.val.top1"]) == "float64"


def test_a_key_holding_a_number_for_some_jobs_and_an_object_for_others_gives_both() -> None:
    frame = results_frame(
        [record("a", result={"loss": 0.5}), record("b", result={"loss": {"train": 0.1}})]
    )
    assert list(frame.columns) == [*FIXED, "loss.train", "loss"]
    assert frame["loss"].isna().tolist() == [False, True]
    assert frame["loss.train"].isna().tolist() == [True, False]


def test_a_dotted_key_and_the_same_nested_key_share_one_column() -> None:
    frame = results_frame(
        [record("a", result={"loss.train": 0.5}), record("b", result={"loss": {"train": 0.1}})]
    )
    assert list(frame.columns) == [*FIXED, "loss.train"]
    assert frame["loss.train"].tolist() == [0.5, 0.1]


def test_a_list_valued_key_is_an_object_column_of_the_lists() -> None:
    frame = results_frame(
        [
            record("a", result={"curve": [0.5, 0.4], "n": 1}),
            record("b", result={"curve": [0.3, 0.2], "n": 2}),
            record("c", result={"n": 3}),
        ]
    )
    assert str(frame.dtypes["curve"]) == "object"
    assert frame.loc["a", "curve"] == [0.5, 0.4] and frame.loc["b", "curve"] == [0.3, 0.2]
    assert frame.loc["c", "curve"] is None
    assert str(frame.dtypes["n"]) == "Int64"  # the list did not spread to other columns


def test_a_list_among_scalars_makes_the_column_object() -> None:
    frame = results_frame([record("a", result={"v": 1}), record("b", result={"v": [1, 2]})])
    assert str(frame.dtypes["v"]) == "object"
    assert frame["v"].tolist() == [1, [1, 2]]


def test_result_keys_named_like_a_param_or_a_fixed_column_are_prefixed() -> None:
    frame = results_frame(
        [
            record(
                "a",
                {"lr": 0.1},
                {"lr": 3, "state": "converged", "duration": 12.5, "id": "run-7", "loss": 0.2},
                state=State.COMPLETED,
                duration=1.0,
            )
        ]
    )
    assert list(frame.columns) == [
        "lr",
        *FIXED,
        "result.lr",
        "result.state",
        "result.duration",
        "result.id",
        "loss",
    ]
    row = frame.loc["a"]
    assert row["lr"] == 0.1 and row["result.lr"] == 3
    assert row["state"] == "completed" and row["result.state"] == "converged"
    assert row["duration"] == 1.0 and row["result.duration"] == 12.5
    assert frame.reset_index()["id"].tolist() == ["a"]  # the index name is free too


def test_a_prefixed_name_that_is_taken_is_prefixed_again() -> None:
    frame = results_frame([record("a", result={"state": 1, "result": {"state": 2}})])
    assert list(frame.columns) == [*FIXED, "result.result.state", "result.state"]
    assert frame.loc["a", "result.result.state"] == 1
    assert frame.loc["a", "result.state"] == 2


def test_params_named_like_a_fixed_column_are_prefixed() -> None:
    frame = results_frame([record("a", {"group": "g1", "attempts": 3}, group="sweep")])
    assert list(frame.columns) == ["param.group", "param.attempts", *FIXED]
    assert frame.loc["a", "param.group"] == "g1" and frame.loc["a", "group"] == "sweep"
    assert frame.loc["a", "param.attempts"] == 3 and frame.loc["a", "attempts"] == 1


def test_running_jobs_have_missing_results_and_no_duration() -> None:
    frame = results_frame(
        [
            record("done", {"seed": 1}, {"loss": 0.5, "steps": 100, "tag": "x", "ok": True}),
            record("running", {"seed": 2}, None, state=State.PROCESSING, duration=None),
            record("waiting", {"seed": 3}, None, state=State.PENDING, duration=None, group=None),
        ]
    )
    assert dtypes(frame)["loss"] == "float64" and dtypes(frame)["steps"] == "Int64"
    for job in ("running", "waiting"):
        row = frame.loc[job]
        assert pd.isna(row["duration"]) and pd.isna(row["loss"])
        assert row["steps"] is pd.NA and row["tag"] is pd.NA and row["ok"] is pd.NA
    assert frame.loc["waiting", "group"] is pd.NA
    assert frame["duration"].tolist()[0] == 1.5


def test_a_result_key_that_is_always_null_is_an_object_column() -> None:
    frame = results_frame([record("a", result={"error": None}), record("b")])
    assert str(frame.dtypes["error"]) == "object" and frame["error"].isna().all()


def test_a_whole_number_past_64_bits_keeps_its_value() -> None:
    frame = results_frame([record("a", result={"big": 2**70}), record("b", result={"big": 1})])
    assert str(frame.dtypes["big"]) == "object"
    assert frame.loc["a", "big"] == 2**70


def test_empty_records_give_the_fixed_columns_typed() -> None:
    empty = results_frame([])
    full = results_frame([record("a", state=State.DEAD, attempts=3)])
    assert list(empty.columns) == FIXED == list(RESULT_DTYPES)
    assert empty.dtypes.equals(full.dtypes)
    assert dtypes(empty) == {
        "group": "string",
        "state": "category",
        "attempts": "Int64",
        "duration": "float64",
    }
    assert empty.dtypes["state"] == state_dtype()
    assert empty.index.name == "id" and str(empty.index.dtype) == "string" and len(empty) == 0


@pytest.mark.parametrize("rows", [1, 3])
def test_values_stay_in_their_rows(rows: int) -> None:
    records = [record(f"j{i}", {"i": i}, {"twice": 2 * i}) for i in range(rows)]
    frame = results_frame(records)
    assert (frame["twice"] == 2 * frame["i"]).all()
    assert frame.index.tolist() == [f"j{i}" for i in range(rows)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([{"a": 1, "b": 2}, {"b": 3, "a": 4}], {"a": [1, 4], "b": [2, 3]}),  # same keys
        ([{"a": 1}, {"b": 2}], {"a": [1, None], "b": [None, 2]}),  # same sizes, other keys
        ([{"a": 1}, None, {"a": 2, "b": 3}], {"a": [1, None, 2], "b": [None, None, 3]}),
        ([None, {"b": 1}, None], {"b": [None, 1, None]}),
    ],
)
def test_columns_take_each_value_from_its_own_row(
    params: list[dict[str, int] | None], expected: dict[str, list[int | None]]
) -> None:
    frame = results_frame([record(f"j{i}", p) for i, p in enumerate(params)])
    got = {
        name: frame[name].astype("object").where(frame[name].notna(), None).tolist()
        for name in expected
    }
    assert list(frame.columns[: len(expected)]) == list(expected)
    assert got == expected
