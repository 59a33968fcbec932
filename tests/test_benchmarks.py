"""The benchmark harness still runs (tiny sizes; its figures are not checked here)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    control,
    dependencies,
    escapes,
    floors,
    lock_share,
    queue_figures,
    run,
    scale,
    sweeps,
)
from benchmarks.report import Figure
from tests.pg_server import PgServer


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


SWEEP_FIGURES = {
    "enqueue_many",
    "sweep",
    "results()",
    "jobs()",
    "attempts()",
    "status()",
    "claim+finish",
}


def check_sweep_figures(figures: list[dict[str, Any]], on: str) -> None:
    """Every sweep figure, named for its store, measured something (as written to JSON)."""
    assert {f["name"].split(",")[0].split(" ")[0] for f in figures} == SWEEP_FIGURES
    assert all(f["name"].endswith(f", {on}") for f in figures)
    assert all(math.isfinite(f["value"]) and f["value"] > 0 for f in figures)
    assert all(f["ratio"] is None or f["ratio"] > 0 for f in figures)


def test_sweep_figures_run_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = ["--sweeps-only", "--sweeps", "quick", "--postgres", "off", "--repeat", "1"]
    run.main([*argv, "--output", str(out)])
    check_sweep_figures(json.loads(out.read_text())["figures"], "SQLite")


@pytest.mark.postgres
def test_sweep_figures_run_on_postgres(pg_server: PgServer) -> None:
    backend = sweeps.postgres_backend(pg_server)
    figures = sweeps.backend_figures(backend, sweeps.QUICK, repeat=1)
    check_sweep_figures([{**asdict(f), "ratio": f.ratio} for f in figures], "PostgreSQL")


@pytest.mark.slow
def test_the_report_is_written_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "measure", lambda *sizes: [Figure("x", 1.0, "/s")])
    out = tmp_path / "report.json"
    run.main(["--repeat", "1", "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["figures"][0]["name"] == "x" and report["machine"]["cpus"]


def test_dependency_figures_run_on_sqlite() -> None:
    figures = dependencies.figures(blocked=300, links=20, samples=10, postgres=False)
    assert [f.name.split(":")[0] for f in figures] == [
        "claim+finish, 300 blocked, SQLite",
        "chain of 20",
        "chain of 20",
    ]
    assert all(math.isfinite(f.value) and f.value > 0 and (f.ratio or 0) > 0 for f in figures)
