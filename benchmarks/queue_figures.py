"""The queue's own figures, each on a fresh temporary queue (embedded SQLite, durable)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import queuectl

QUEUECTL = str(Path(sys.executable).with_name("queuectl"))


@contextmanager
def fresh_queue() -> Iterator[queuectl.Queue]:
    """A new queue in a temporary folder, its own QUEUECTL_HOME for pool logs."""
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder:
        queue = queuectl.connect(str(Path(folder) / "queue.db"))
        try:
            yield queue
        finally:
            queue.close()


@contextmanager
def pool_process(
    queue: queuectl.Queue, threads: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``queuectl worker run`` in a child process, registered before this yields."""
    env = {**os.environ, "QUEUECTL_DB": queue.db}
    proc = subprocess.Popen(
        [QUEUECTL, "worker", "run", "--count", str(threads), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(w.pid == proc.pid for w in queue.workers()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's worker pool did not start")
            time.sleep(0.01)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


def enqueue_single_rate(total: int = 1000) -> float:
    """Jobs per second, one ``enqueue`` call (one durable transaction) each."""
    with fresh_queue() as queue:
        start = time.perf_counter()
        for _ in range(total):
            queue.enqueue("true")
        return total / (time.perf_counter() - start)


def enqueue_batch_rate(total: int = 10_000) -> float:
    """Jobs per second through ``enqueue_many`` (one transaction)."""
    with fresh_queue() as queue:
        start = time.perf_counter()
        queue.enqueue_many(["true"] * total)
        return total / (time.perf_counter() - start)


def cli_enqueue_seconds(samples: int = 10) -> float:
    """Median wall time of ``queuectl enqueue true`` on an existing queue."""
    with fresh_queue() as queue:
        env = {**os.environ, "QUEUECTL_DB": queue.db}
        subprocess.run([QUEUECTL, "enqueue", "true"], env=env, check=True, capture_output=True)
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            subprocess.run([QUEUECTL, "enqueue", "true"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def _span(queue: queuectl.Queue) -> float:
    """Seconds from the first attempt's start to the last one's finish."""
    attempts = queue.attempt_records()
    ends = [a.finished_at for a in attempts if a.finished_at is not None]
    return (max(ends) - min(a.started_at for a in attempts)).total_seconds()


def drain_rate(total: int = 2000, threads: int = 4, command: str = "true") -> float:
    """Jobs per second for a pool of ``threads`` draining ``total`` queued jobs."""
    with fresh_queue() as queue:
        queue.enqueue_many([command] * total)
        with pool_process(queue, threads, "--until-empty") as proc:
            proc.wait(timeout=600)
        assert queue.counts()[queuectl.State.COMPLETED] == total
        return total / _span(queue)


def sleep_efficiency(total: int = 1000, threads: int = 4, seconds: float = 0.05) -> float:
    """Ideal time over actual time for ``total`` x ``sleep seconds`` on ``threads`` threads."""
    rate = drain_rate(total, threads, f"sleep {seconds}")
    return rate * seconds / threads


def pickup_latencies(samples: int = 30) -> list[float]:
    """Seconds from an enqueue (in this process) to the job's start in an idle pool (another
    process), after idle gaps of varied length.

    Both ends are the store's timestamps: the job's ``created_at``, taken in the enqueue's
    transaction, and its attempt's ``started_at``. So the figure includes the enqueue's commit
    (an fsync); a clock read after ``enqueue`` returned could come after the job had started.
    """
    with fresh_queue() as queue, pool_process(queue, 4):
        return pickups(queue, samples)


def pickups(
    queue: queuectl.Queue, samples: int, gaps: tuple[float, ...] = (0.05, 0.2, 0.5, 1.0, 2.0, 0.1)
) -> list[float]:
    """``pickup_latencies`` on ``queue``, whose idle pool runs already."""
    latencies = []
    for n in range(samples):
        time.sleep(gaps[n % len(gaps)])
        job_id = queue.enqueue("true")
        deadline = time.monotonic() + 30
        while not (attempts := queue.attempt_records(job_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} was not picked up within 30 s")
            time.sleep(0.0005)
        latencies.append((attempts[0].started_at - queue.get(job_id).created_at).total_seconds())
    return latencies


def idle_cpu_share(seconds: float = 10.0) -> float:
    """Share of one CPU an idle 4-thread pool process uses."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    with fresh_queue() as queue, pool_process(queue, 4) as proc:
        time.sleep(1.0)  # let start-up work settle
        before = _cpu_ticks(proc.pid)
        time.sleep(seconds)
        used = _cpu_ticks(proc.pid) - before
    return used / ticks_per_second / seconds


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
