"""Large queues: the everyday operations must not slow down as history piles up.

A queue of N jobs is built in one go through the store's bulk import (the path `queuectl
migrate` uses): 89 % completed, 10 % dead, 1 % pending, one attempt per finished job. (With
10 % dead, the 1,000-job queue too has the 50 dead jobs `list --state dead --limit 50` shows.)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import queuectl
from benchmarks.report import Figure
from queuectl.model import Attempt, Config, Job, Outcome, QueueCopy, State


def _history(total: int) -> QueueCopy:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    jobs, attempts = [], []
    for n in range(total):
        state = State.DEAD if n % 10 == 1 else State.PENDING if n % 100 == 2 else State.COMPLETED
        created = start + timedelta(milliseconds=n)
        finished = created + timedelta(milliseconds=50)
        done = state is not State.PENDING
        jobs.append(
            Job(
                id=f"job-{n:07d}",
                command=f"python train.py --seed {n}",
                state=state,
                attempts=1 if done else 0,
                max_retries=0,
                priority=0,
                run_at=created,
                timeout=0.0,
                created_at=created,
                updated_at=finished if done else created,
                last_error="exit code 1" if state is State.DEAD else None,
            )
        )
        if done:
            failed = state is State.DEAD
            attempts.append(
                Attempt(
                    job_id=f"job-{n:07d}",
                    number=1,
                    worker_id="bench:1:0000",
                    started_at=created,
                    finished_at=finished,
                    exit_code=1 if failed else 0,
                    outcome=Outcome.FAILED if failed else Outcome.COMPLETED,
                    error="exit code 1" if failed else None,
                    stdout=b"",
                    stderr=b"",
                )
            )
    return QueueCopy(jobs, attempts, Config())


@contextmanager
def large_queue(total: int) -> Iterator[queuectl.Queue]:
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder:
        queue = queuectl.connect(str(Path(folder) / "queue.db"))
        queue.store.import_copy(_history(total))
        try:
            yield queue
        finally:
            queue.close()


def median_seconds(action: Callable[[], object], samples: int = 7) -> float:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _operations(queue: queuectl.Queue) -> dict[str, float]:
    dead = iter(queue.job_records(State.DEAD, 50))
    return {
        "status": median_seconds(queue.status),
        "snapshot (a panel refresh's read)": median_seconds(queue.snapshot),
        "list --state dead --limit 50": median_seconds(lambda: queue.job_records(State.DEAD, 50)),
        "claim": median_seconds(lambda: queue.store.claim("bench:2:0000", 30)),
        "dlq retry": median_seconds(lambda: queue.retry(next(dead).id)),
    }


def figures(total: int, frame_rows: int = 100_000) -> list[Figure]:
    """Each operation's time on a large queue, against the same on a 1,000-job queue, and
    the time to build DataFrames of ``frame_rows`` jobs and their attempts."""
    with large_queue(1000) as small:
        baseline = _operations(small)
    with large_queue(total) as large:
        measured = _operations(large)
        metrics_seconds = median_seconds(large.metrics, 3)  # reads every attempt: grows with them
    result = [
        Figure(
            f"{name}, {total:,} jobs",
            measured[name] * 1000,
            "ms",
            "1,000 jobs",
            baseline[name] * 1000,
            False,
        )
        for name in measured
    ]
    result.append(Figure(f"metrics(), {total:,} jobs", metrics_seconds, "s", None, None, False))
    with large_queue(frame_rows) as frames:
        finished = len(frames.attempt_records())
        result.append(
            Figure(f"jobs() DataFrame, {frame_rows:,} rows", median_seconds(frames.jobs, 3), "s")
        )
        result.append(
            Figure(
                f"attempts() DataFrame, {finished:,} rows", median_seconds(frames.attempts, 3), "s"
            )
        )
    return result
