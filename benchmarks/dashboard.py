"""The dashboard at 1,000,000 jobs (SQLite): its API's latency, the cost of live updates, and
the first load of its page in Chromium.

    .venv/bin/python -m benchmarks.dashboard [--jobs 1000000] [--samples 50]

- API p95 over ``--samples`` requests (in process, through the whole app: routing, the click
  command, the store, JSON): the first page of jobs, a page deep in the queue (keyset: the
  same cost), a state filter, a group, one job; the text search when its matches are near
  (the newest jobs) and when there is one match only, the oldest job (a scan of every job).
- Live updates: the ticker's readings per second with 1 and with 20 open pages (the same:
  pages read memory), and what one reading costs: a snapshot each tick; the recent attempt
  history (charts, /metrics) when attempts finished, in a thread of its own, at most every
  20 times its cost. The history is measured as the queue is built (every attempt older than
  a day: the newest 10,000 are read), then with its newest 100,000 attempts moved into the
  last day (all of them are read for the throughput chart).
- The overview and the jobs page in Chromium, served by the real ``queuectl dashboard``:
  DOMContentLoaded after navigation starts (median of 5).
Writes benchmarks/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import queuectl
from benchmarks.report import Figure, machine, table
from benchmarks.sweeps import fill_sqlite
from queuectl.web import live
from queuectl.web.app import create_app

RESULTS = Path(__file__).parent / "results" / "dashboard.json"
GOAL_MS = 50.0


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def api_figures(db: str, jobs: int, samples: int) -> list[Figure]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette suggests httpx2 for its test client
        from starlette.testclient import TestClient

    middle = f"job-{jobs // 2:07d}"
    oldest = f"job-{0:07d}"
    cases = [
        ("API p95: jobs, first page (50)", "/api/jobs"),
        ("API p95: jobs, a page in the middle", f"/api/jobs?before={middle}"),
        ("API p95: jobs, state=dead", "/api/jobs?state=dead"),
        ("API p95: jobs, state=dead, middle", f"/api/jobs?state=dead&before={middle}"),
        ("API p95: jobs, group", "/api/jobs?group=sweep-0050"),
        ("API p95: jobs, search (near matches)", "/api/jobs?q=seed+99"),
        ("API p95: jobs, search (1 match: scan)", f"/api/jobs?q={oldest}"),
        ("API p95: one job", f"/api/jobs/{middle}"),
        ("page p95: /jobs (HTML)", "/jobs"),
        ("page p95: /jobs/ID (HTML)", f"/jobs/{middle}"),
    ]
    figures = []
    with (
        queuectl.connect(db) as queue,
        TestClient(create_app(queue), base_url="http://127.0.0.1") as client,
    ):
        for name, path in cases:
            times = []
            rounds = samples if "scan" not in name else max(5, samples // 10)
            for _ in range(rounds + 2):
                start = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, (path, answer.text[:200])
            figures.append(
                Figure(name, _p95(times[2:]), "ms", "goal", GOAL_MS, higher_is_better=False)
            )
    return figures


def live_figures(db: str) -> list[Figure]:
    figures = []
    with queuectl.connect(db) as queue:
        start = time.perf_counter()
        queue.snapshot(recent=live.LISTED, listed=live.LISTED)
        snapshot_ms = (time.perf_counter() - start) * 1000
        history_ms = _history_ms(queue)
        for pages in (1, 20):
            ticker = live.Ticker(queue, interval=0.5)
            stop = threading.Event()

            def page(ticker: live.Ticker = ticker, stop: threading.Event = stop) -> None:
                while not stop.is_set():  # what each page's event stream does
                    ticker.demand()
                    _ = ticker.frame
                    stop.wait(0.25)

            readers = [threading.Thread(target=page) for _ in range(pages)]
            ticker.start()
            for reader in readers:
                reader.start()
            ticker.current()
            before, start = ticker.reads, time.perf_counter()
            time.sleep(5)
            rate = (ticker.reads - before) / (time.perf_counter() - start)
            stop.set()
            ticker.stop()
            for reader in readers:
                reader.join()
            figures.append(
                Figure(f"live: snapshot reads/s, {pages} open page(s)", rate, "/s", None, None)
            )
        hot_ms = _history_ms(queue, recent=RECENT)
    figures.append(Figure("live: one snapshot (every tick)", snapshot_ms, "ms", None, None, False))
    for name, value in (("none in the last day", history_ms), (f"{RECENT:,} in it", hot_ms)):
        figures.append(Figure(f"live: attempt history, {name}", value, "ms", None, None, False))
    return figures


#: attempts moved into the last day for the second measure of the history
RECENT = 100_000


def _history_ms(queue: queuectl.Queue, recent: int = 0, rounds: int = 5) -> float:
    """The median time of the ticker's reading of the attempt history; with ``recent``, once
    the newest ``recent`` attempts have been moved to have started in the last day."""
    if recent:
        now = queue.store.now().timestamp()
        conn = sqlite3.connect(queue.db, isolation_level=None)
        try:
            first, started = conn.execute(
                "SELECT id, started_at FROM attempts ORDER BY id DESC LIMIT 1 OFFSET ?",
                (recent - 1,),
            ).fetchone()
            shift = now - live.HISTORY_STARTED + 60 - started  # (ids still grow with starts)
            conn.execute(
                "UPDATE attempts SET started_at = started_at + :shift, "
                "finished_at = finished_at + :shift WHERE id >= :first",
                {"shift": shift, "first": first},
            )
        finally:
            conn.close()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        live.read_history(queue, queue.store.now())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def browser_figures(db: str) -> list[Figure]:
    if not os.access("/usr/bin/chromium", os.X_OK):
        print("Chromium not found: the page load is not measured.", file=sys.stderr)
        return []
    from playwright.sync_api import sync_playwright

    queuectl_bin = str(Path(sys.executable).with_name("queuectl"))
    server = subprocess.Popen(
        [queuectl_bin, "--db", db, "dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    figures = []
    try:
        assert server.stdout is not None
        url = [server.stdout.readline() for _ in range(2)][1].strip()
        args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            for name, path in (("overview", ""), ("jobs page", "jobs")):
                loads = []
                for _ in range(6):
                    page = browser.new_page()
                    page.goto(url + path, wait_until="domcontentloaded")
                    loads.append(
                        page.evaluate(
                            "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                        )
                    )
                    page.close()
                figures.append(
                    Figure(
                        f"browser: DOMContentLoaded, {name}",
                        statistics.median(loads[1:]),
                        "ms",
                        None,
                        None,
                        False,
                    )
                )
            browser.close()
    finally:
        server.terminate()
        server.communicate(timeout=15)
    return figures


def figures(jobs: int = 1_000_000, samples: int = 50) -> list[Figure]:
    """Every figure, on a fresh queue of ``jobs`` jobs (built in SQL, as benchmarks.sweeps
    does: 5% dead, 100 groups, one attempt per job that ran)."""
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-dashboard-") as folder:
        db = str(Path(folder) / "queue.db")
        start = time.perf_counter()
        fill_sqlite(db, jobs, 100)
        print(f"built {jobs:,} jobs in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        return [*api_figures(db, jobs, samples), *live_figures(db), *browser_figures(db)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=50)
    options = parser.parse_args(argv)
    measured = figures(options.jobs, options.samples)
    print(table(measured))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": machine(), "jobs": options.jobs, "figures": [f.__dict__ for f in measured]},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
