"""The benchmark harness still runs (tiny sizes; its figures are not checked here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import control, escapes, floors, lock_share, queue_figures, run, scale
from benchmarks.report import Figure


def test_each_figure_measures_something() -> None:
    for value in (
        floors.spawn_rate(threads=2, total=20),
        floors.sqlite_commit_rate("NORMAL", total=20),
        floors.import_click_seconds(),
        queue_figures.enqueue_single_rate(total=20),
        queue_figures.enqueue_batch_rate(total=50),
        queue_figures.drain_rate(total=20, threads=2),
        queue_figures.sleep_efficiency(total=8, threads=2, seconds=0.01),
        *queue_figures.pickup_latencies(samples=2),
        escapes.end_of_attempt_micros("adopting", calls=10),
        escapes.end_of_attempt_micros("scanning", calls=10),
        lock_share.lock_share(total=20, threads=2),
    ):
        assert math.isfinite(value) and value > 0


def test_each_job_control_figure_measures_something() -> None:
    for value in (
        control.drain_rate(True, total=20, threads=2),
        control.drain_rate(False, total=20, threads=2),
        control.sleep_efficiency(False, total=8, threads=2, seconds=0.01),
        *control.cancel_latencies(samples=2),
        *control.kill_latencies(samples=2),
        control.output_writes_per_second(seconds=1.5),  # one write at least, after a second
        control.prune_seconds(total=100),
    ):
        assert math.isfinite(value) and value > 0


def test_scale_figures_compare_against_a_small_queue() -> None:
    figures = scale.figures(total=2000, frame_rows=500)
    assert {f.name.split(",")[0] for f in figures} >= {"status", "claim", "dlq retry"}
    assert all(f.value > 0 for f in figures)


@pytest.mark.slow
def test_the_report_is_written_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "measure", lambda *sizes: [Figure("x", 1.0, "/s")])
    out = tmp_path / "report.json"
    run.main(["--repeat", "1", "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["figures"][0]["name"] == "x" and report["machine"]["cpus"]
