"""Measure queuectl against this machine's floors, in one run; print a table, write JSON.

    make bench                       # or: .venv/bin/python -m benchmarks.run [--repeat 3]
    .venv/bin/python -m benchmarks.run --repeat 1 --scale-jobs 100000 --prune-jobs 0  # quick
    .venv/bin/python -m benchmarks.run --sweeps-only         # only benchmarks.sweeps

Every figure is the median of ``--repeat`` runs, each on a fresh temporary queue (embedded
SQLite, ``synchronous=FULL``: every enqueue is durable when it returns). Floors are measured in
the same run, so ratios stay meaningful on a busy or a different machine. Latencies are
percentiles of ``--repeat`` times as many samples. ``--scale-jobs N``: the size of the large
queue (``benchmarks.scale``); ``--prune-jobs N``: the finished jobs one prune deletes
(``benchmarks.control``; about 35 s for 1,000,000 with building the queue; 0 leaves it out).
``--sweeps full|quick|off``: the sweep and large-history figures (``benchmarks.sweeps``), on
SQLite and on a throwaway PostgreSQL server when its programs are installed (``--postgres
off``: SQLite only); ``quick`` runs them at tiny sizes, in seconds; ``--sweeps-only`` leaves
every other figure out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import (
    control,
    dashboard,
    dependencies,
    escapes,
    floors,
    lock_share,
    queue_figures,
    scale,
    sweeps,
)
from benchmarks.report import Figure, machine, percentile, table


def median_of(repeat: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeat))


def medians_on_off(repeat: int, measure: Callable[[bool], float]) -> tuple[float, float]:
    """Medians of ``measure(True)`` and ``measure(False)``, taken in turn (so that a machine
    that slows down or speeds up during the run weighs on both alike)."""
    on, off = [], []
    for _ in range(repeat):
        on.append(measure(True))
        off.append(measure(False))
    return statistics.median(on), statistics.median(off)


#: the sizes of ``--sweeps``
SWEEP_SIZES = {"full": sweeps.FULL, "quick": sweeps.QUICK, "off": None}


def measure(
    repeat: int,
    scale_jobs: int,
    prune_jobs: int,
    sweep_sizes: sweeps.Sizes | None = sweeps.FULL,
    postgres: bool = True,
    dashboard_jobs: int = 1_000_000,
    blocked_jobs: int = 100_000,
) -> list[Figure]:
    spawn = median_of(repeat, floors.spawn_rate)
    commit_full = median_of(repeat, lambda: floors.sqlite_commit_rate("FULL"))
    commit_normal = median_of(repeat, lambda: floors.sqlite_commit_rate("NORMAL"))
    click_seconds = median_of(max(repeat, 5), floors.import_click_seconds)
    figures = [
        Figure("floor: sh -c true, 4 threads", spawn, "/s"),
        Figure("floor: SQLite WAL commit, FULL", commit_full, "/s"),
        Figure("floor: SQLite WAL commit, NORMAL", commit_normal, "/s"),
        Figure("floor: python -c 'import click'", click_seconds * 1000, "ms", None, None, False),
        Figure(
            "enqueue, one per call (API)",
            median_of(repeat, queue_figures.enqueue_single_rate),
            "/s",
            "SQLite commit FULL",
            commit_full,
        ),
        Figure(
            "enqueue_many, 10,000 in one call",
            median_of(repeat, queue_figures.enqueue_batch_rate),
            "/s",
            "SQLite commit FULL",
            commit_full,
        ),
        Figure(
            "queuectl enqueue (CLI), wall time",
            median_of(repeat, queue_figures.cli_enqueue_seconds) * 1000,
            "ms",
            "import click",
            click_seconds * 1000,
            False,
        ),
        Figure(
            "drain 2,000 `true`, 4 threads",
            median_of(repeat, queue_figures.drain_rate),
            "/s",
            "sh -c true, 4 threads",
            spawn,
        ),
        # One thread's share of the spawn floor: what starting and reaping a job's shell costs.
        Figure(
            "attempt end: orphan check, worker run",
            median_of(repeat, lambda: escapes.end_of_attempt_micros("adopting")),
            "µs",
            "sh -c true, per job and thread",
            4 / spawn * 1e6,
            False,
        ),
        Figure(
            f"attempt end: /proc scan, kernel ({escapes.process_count()} procs)",
            median_of(repeat, lambda: escapes.end_of_attempt_micros("scanning")),
            "µs",
            "sh -c true, per job and thread",
            4 / spawn * 1e6,
            False,
        ),
        Figure(
            "write lock held, 4 threads draining `true`",
            median_of(repeat, lock_share.lock_share) * 100,
            "% of time",
            higher_is_better=False,
        ),
        Figure(
            "write lock held, 4 threads, `sleep 0.05`",
            median_of(repeat, lambda: lock_share.lock_share(1000, 4, "sleep 0.05")) * 100,
            "% of time",
            higher_is_better=False,
        ),
        Figure(
            "`sleep 0.05` x 1,000, 4 threads",
            median_of(repeat, queue_figures.sleep_efficiency) * 100,
            "% of ideal",
        ),
    ]
    # Live output on and off, through the same pool process (benchmarks.control).
    drain_on, drain_off = medians_on_off(repeat, control.drain_rate)
    sleep_on, sleep_off = medians_on_off(repeat, control.sleep_efficiency)
    figures += [
        Figure(
            "drain 2,000 `true`, live output off", drain_off, "/s", "sh -c true, 4 threads", spawn
        ),
        Figure("drain 2,000 `true`, live output on", drain_on, "/s", "live output off", drain_off),
        Figure("`sleep 0.05` x 1,000, live output off", sleep_off * 100, "% of ideal"),
        Figure(
            "`sleep 0.05` x 1,000, live output on",
            sleep_on * 100,
            "% of ideal",
            "live output off",
            sleep_off * 100,
        ),
        Figure(
            "live output writes, job printing 3 s",
            median_of(repeat, control.output_writes_per_second),
            "/job-second",
            higher_is_better=False,
        ),
    ]
    latencies = queue_figures.pickup_latencies(samples=30 * repeat)
    figures += [
        Figure("pickup latency p50", percentile(latencies, 0.50) * 1000, "ms", None, None, False),
        Figure("pickup latency p95", percentile(latencies, 0.95) * 1000, "ms", None, None, False),
        Figure("idle 4-thread pool, CPU", queue_figures.idle_cpu_share() * 100, "% of a core"),
    ]
    cancels = control.cancel_latencies(samples=10 * repeat)
    kills = control.kill_latencies(samples=10 * repeat)
    figures += [
        Figure(
            f"cancel latency {name}",
            percentile(cancels, q) * 1000,
            "ms",
            f"killpg SIGTERM {name}",
            percentile(kills, q) * 1000,
            False,
        )
        for name, q in (("p50", 0.50), ("p95", 0.95))
    ]
    figures += scale.figures(scale_jobs)
    if prune_jobs:
        seconds = control.prune_seconds(prune_jobs)
        figures += [
            Figure(f"prune {prune_jobs:,} finished jobs", seconds, "s", None, None, False),
            Figure(f"prune {prune_jobs:,} finished jobs, rate", prune_jobs / seconds, "jobs/s"),
        ]
    if sweep_sizes is not None:
        figures += sweeps.figures(sweep_sizes, repeat, postgres)
    if dashboard_jobs:
        figures += dashboard.figures(dashboard_jobs)
    if blocked_jobs:
        figures += dependencies.figures(blocked_jobs, postgres=postgres)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--scale-jobs", type=int, default=1_000_000, help="jobs in the large queue")
    parser.add_argument(
        "--prune-jobs",
        type=int,
        default=1_000_000,
        help="finished jobs one prune deletes (0: leave the prune out)",
    )
    parser.add_argument(
        "--sweeps",
        choices=list(SWEEP_SIZES),
        default="full",
        help="the sweep and large-history figures: full sizes, tiny ones (seconds), or none",
    )
    parser.add_argument(
        "--sweeps-only", action="store_true", help="only the figures of --sweeps (default full)"
    )
    parser.add_argument(
        "--postgres",
        choices=["auto", "off"],
        default="auto",
        help="the sweep figures on a throwaway PostgreSQL server too, if it is installed (auto)",
    )
    parser.add_argument(
        "--dashboard-jobs",
        type=int,
        default=1_000_000,
        help="jobs in the dashboard's queue (benchmarks.dashboard; 0: leave it out)",
    )
    parser.add_argument(
        "--blocked-jobs",
        type=int,
        default=100_000,
        help="blocked jobs beside the claims, and the dependency figures (0: leave them out)",
    )
    parser.add_argument(
        "--dependencies-only", action="store_true", help="only benchmarks.dependencies"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/latest.json"), help="JSON file"
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    sweep_sizes, postgres = SWEEP_SIZES[args.sweeps], args.postgres == "auto"
    if args.sweeps_only:
        figures = sweeps.figures(sweep_sizes, args.repeat, postgres) if sweep_sizes else []
    elif args.dependencies_only:
        figures = dependencies.figures(args.blocked_jobs, postgres=postgres)
    else:
        figures = measure(
            args.repeat,
            args.scale_jobs,
            args.prune_jobs,
            sweep_sizes,
            postgres,
            args.dashboard_jobs,
            args.blocked_jobs,
        )
    print(table(figures))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": started.isoformat(timespec="seconds"),
        "repeat": args.repeat,
        "machine": machine(),
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
