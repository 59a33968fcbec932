"""Plots of the attempt history: bars, lanes, colours, groups, on made-up and real histories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after the backend is chosen
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from queuectl.api import connect
from queuectl.errors import InvalidInput, MissingDependency
from queuectl.frames import attempt_table, attempts_frame
from queuectl.model import Attempt, Outcome
from queuectl.plots import OUTCOME_COLORS, runtimes, timeline

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POOL_A = "host-a:100:aaaa"
POOL_B = "host-b:200:bbbb"


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def attempt(
    job: str, pool: str, start: float, end: float | None, outcome: Outcome | None, number: int = 1
) -> Attempt:
    return Attempt(
        job_id=job,
        number=number,
        worker_id=pool,
        started_at=START + timedelta(seconds=start),
        finished_at=None if end is None else START + timedelta(seconds=end),
        exit_code=None if outcome is None else int(outcome != Outcome.COMPLETED),
        outcome=outcome,
        error=None,
        stdout=b"",
        stderr=b"",
    )


def history() -> list[Attempt]:
    """Pool A runs three attempts at once (at second 2 to 3); pool B one after another."""
    return [
        attempt("a1", POOL_A, 0, 4, Outcome.COMPLETED),
        attempt("a2", POOL_A, 1, 3, Outcome.FAILED),
        attempt("a3", POOL_A, 2, 6, Outcome.COMPLETED),
        attempt("a2", POOL_A, 4, 5, Outcome.COMPLETED, number=2),  # fits a freed lane
        attempt("b1", POOL_B, 0, 2, Outcome.COMPLETED),
        attempt("b2", POOL_B, 2, 5, Outcome.TIMEOUT),
        attempt("b3", POOL_B, 5, 7, Outcome.COMPLETED),
    ]


def frame(attempts: list[Attempt]):
    return attempts_frame(attempt_table(attempts, {a.job_id: f"run {a.job_id}" for a in attempts}))


def bars(ax: Axes) -> list[Rectangle]:
    assert all(isinstance(patch, Rectangle) for patch in ax.patches)
    return [patch for patch in ax.patches if isinstance(patch, Rectangle)]


def bar_colors(ax: Axes) -> set[tuple[float, ...]]:
    return {to_rgba(patch.get_facecolor()) for patch in bars(ax)}


def test_one_bar_per_attempt_in_as_many_lanes_as_a_pool_ran_at_once() -> None:
    ax = timeline(frame(history()))
    assert len(ax.patches) == 7
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{POOL_A} #1", f"{POOL_A} #2", f"{POOL_A} #3", f"{POOL_B} #1"]
    rows = sorted({round(p.get_y() + p.get_height() / 2) for p in bars(ax)})
    assert rows == [0, 1, 2, 3]
    # Bars start where their attempts start, in seconds since the first start.
    assert sorted(p.get_x() for p in bars(ax)) == pytest.approx([0, 0, 1, 2, 2, 4, 5])
    assert ax.get_xlabel() == "seconds since the first start (2026-01-01 12:00:00 UTC)"


def test_no_two_bars_of_a_lane_overlap() -> None:
    ax = timeline(frame(history()))
    by_row: dict[float, list[tuple[float, float]]] = {}
    for patch in bars(ax):
        by_row.setdefault(patch.get_y(), []).append(
            (patch.get_x(), patch.get_x() + patch.get_width())
        )
    for spans in by_row.values():
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in pairwise(spans))


def test_bars_are_coloured_by_outcome_with_a_legend_of_those_present() -> None:
    ax = timeline(frame(history()))
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["completed", "failed", "timeout"]
    colours = bar_colors(ax)
    assert len(colours) == 3
    assert to_rgba(OUTCOME_COLORS[Outcome.FAILED]) in colours
    assert to_rgba(OUTCOME_COLORS[Outcome.LOST]) not in colours


def test_a_running_attempt_reaches_now_and_is_hatched() -> None:
    attempts = [*history(), attempt("b4", POOL_B, 7, None, None)]
    ax = timeline(frame(attempts), now=START + timedelta(seconds=10))
    assert len(ax.patches) == 8
    running = [p for p in bars(ax) if p.get_hatch()]
    assert len(running) == 1
    assert (running[0].get_x(), running[0].get_width()) == pytest.approx((7, 3))
    legend = ax.get_legend()
    assert legend is not None and "running" in [t.get_text() for t in legend.get_texts()]


def test_by_default_a_running_attempt_reaches_the_current_time() -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    running = replace(attempt("r", POOL_A, 0, None, None), started_at=started)
    ax = timeline(frame([running]))
    (bar,) = bars(ax)
    assert 29 <= bar.get_width() < 60


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        timeline(frame(history()), now=datetime(2026, 1, 1, 12, 0, 10))


def test_long_histories_are_drawn_in_minutes() -> None:
    attempts = [attempt("long", POOL_A, 0, 1200, Outcome.COMPLETED)]
    ax = timeline(frame(attempts))
    assert ax.get_xlabel().startswith("minutes since the first start")
    assert bars(ax)[0].get_width() == pytest.approx(20)


def test_it_draws_on_the_axes_it_is_given() -> None:
    figure, given = plt.subplots()
    assert timeline(frame(history()), ax=given) is given
    assert runtimes(frame(history()), ax=given) is given
    assert given.figure is figure


def test_runtimes_has_one_box_per_group_labelled_with_its_size() -> None:
    ax = runtimes(frame(history()))
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["completed (n=5)", "failed (n=1)", "timeout (n=1)"]
    assert len(ax.patches) == 3  # the boxes
    points = sum(len(np.asarray(c.get_offsets())) for c in ax.collections)
    assert points == 7
    assert ax.get_ylabel() == "duration (s)"


def test_runtimes_by_another_column_and_without_running_attempts() -> None:
    attempts = [*history(), attempt("b4", POOL_B, 7, None, None)]
    ax = runtimes(frame(attempts), by="worker_id")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [f"{POOL_A} (n=4)", f"{POOL_B} (n=3)"]
    assert ax.get_xlabel() == "worker_id"


def test_runtimes_by_an_added_parameter_column_in_numeric_order() -> None:
    attempts = frame(history())
    attempts["lr"] = [0.1, 0.01, 0.1, 0.01, 1.0, 0.1, 1.0]
    ax = runtimes(attempts, by="lr")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["0.01 (n=2)", "0.1 (n=3)", "1.0 (n=2)"]


def test_runtimes_by_an_unknown_column_names_the_columns() -> None:
    with pytest.raises(InvalidInput, match=r"'nope'.*outcome.*worker_id"):
        runtimes(frame(history()), by="nope")


@pytest.mark.parametrize("draw", [timeline, runtimes])
def test_an_empty_history_draws_a_note_instead_of_raising(draw) -> None:
    ax = draw(frame([]))
    assert [t.get_text() for t in ax.texts] == ["no attempts yet"]
    assert len(ax.patches) == 0


def test_runtimes_of_only_running_attempts_says_so() -> None:
    ax = runtimes(frame([attempt("r", POOL_A, 0, None, None)]))
    assert [t.get_text() for t in ax.texts] == ["no finished attempts yet"]


@pytest.mark.parametrize("draw", [timeline, runtimes])
def test_without_matplotlib_the_error_says_what_to_install(draw, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails: not installed
    with pytest.raises(MissingDependency, match=r"pip install 'queuectl\[plot\]'"):
        draw(frame(history()))


def test_plots_of_a_real_queue(tmp_path: Path, home: Path) -> None:
    with connect(str(tmp_path / "q.db")) as q:
        for n in range(6):
            q.enqueue("sleep 0.05", id=f"ok-{n}")
        q.enqueue("exit 3", id="bad", max_retries=0)
        q.run_workers(3, until_empty=True)
        attempts = q.attempts()
    assert len(attempts) == 7
    ax = timeline(attempts)
    assert len(ax.patches) == 7
    lanes = [t.get_text() for t in ax.get_yticklabels()]
    assert 1 <= len(lanes) <= 3
    assert all(label.startswith(attempts["worker_id"].iloc[0] + " #") for label in lanes)
    assert len(bar_colors(ax)) == 2
    boxes = runtimes(attempts)
    labels = [t.get_text() for t in boxes.get_xticklabels()]
    assert labels == ["completed (n=6)", "failed (n=1)"]
