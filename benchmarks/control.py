"""Job control: how fast a cancel stops a running job, what live output costs, how fast a
prune deletes history. Each on a fresh temporary queue (embedded SQLite).

- Cancel latency: a ``queuectl worker run`` pool (another process) runs ``sleep 300`` jobs
  whose shell first writes its pid (``$$``: the shell leads the job's process group) to a file.
  The clock starts when ``Queue.cancel(id, wait=False)`` returns in this process (the request
  is committed) and stops once ``os.killpg(pgid, 0)`` fails: every process of the group has
  died and been reaped. Its floor: the same kind of group, started by a child subreaper that
  reaps at once, killed by this process's own ``os.killpg(pgid, SIGTERM)``.
- Live output: the pool writes a running job's output tail to the queue about once a second
  while it changes. The drain and ``sleep 0.05`` figures are measured with that on and off
  (``WorkerPool(report_output=...)``), alternately in the same run, through the same pool
  process (``python -m benchmarks.control worker-run on|off ...``: ``queuectl worker run``
  with the pool's default switched). Those jobs end within a second, so they never cause a
  write: the pair shows what the reporting costs a pool while it only keeps time. A job that
  prints a line every 10 ms for about 3 s shows how many writes it causes per second it runs
  (calls of the store's ``record_output``, counted in a pool in this process).
- Prune: ``Queue.prune(0)`` of a queue of N finished jobs, each with one attempt, in one
  call. The queue file is made by queuectl, its rows inserted with plain SQL (fast to build).
  ``python -m benchmarks.run --prune-jobs N`` sets N (default 1,000,000: about 17 s to build
  and 17 s to prune on a shared 2-core machine; 0 leaves it out).

Child processes: ``python -m benchmarks.control worker-run on|off ARGS`` (the pool above) and
``python -m benchmarks.control reaper`` (the floor's group starter).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import queuectl
from benchmarks.queue_figures import fresh_queue, pool_process
from queuectl.model import Fence, Outcome, RunResult, State

#: the job of the cancel figures: its shell writes its pid, then waits
SLEEPER = "echo $$ > {path}; sleep 300"
#: how often the group is looked for while it dies, seconds
POLL = 0.0002


# -- cancel latency ----------------------------------------------------------------------------


def _read_pgid(path: Path, timeout: float = 30.0) -> int:
    """The pid the job's shell wrote to ``path`` (once it wrote all of it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n"):
            return int(text)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job did not write its pid to {path} within {timeout} s")
        time.sleep(0.001)


def _until_gone(pgid: int, timeout: float = 30.0) -> float:
    """Poll until process group ``pgid`` is gone; return ``time.perf_counter()`` then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"process group {pgid} still exists after {timeout} s")
        time.sleep(POLL)


def _gaps(samples: int) -> list[float]:
    """Pauses between a job's start and its cancel, seconds: spread, so that the cancel comes
    at every phase of the pool's timers (its heartbeat, its runner's wake-ups)."""
    rng = random.Random(20261130)
    return [rng.uniform(0.05, 0.5) for _ in range(samples)]


def cancel_latencies(samples: int = 30) -> list[float]:
    """Seconds from ``cancel(id, wait=False)`` returning to the job's process group being
    gone, for a job run by a ``queuectl worker run`` pool in another process."""
    latencies = []
    with (
        fresh_queue() as queue,
        tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder,
        pool_process(queue, 1),
    ):
        for n, gap in enumerate(_gaps(samples)):
            path = Path(folder) / f"pgid-{n}"
            job_id = queue.enqueue(SLEEPER.format(path=path))
            pgid = _read_pgid(path)
            time.sleep(gap)
            queue.cancel(job_id, wait=False)
            start = time.perf_counter()
            latencies.append(_until_gone(pgid) - start)
            _until_state(queue, job_id, State.CANCELLED)
    return latencies


def _until_state(queue: queuectl.Queue, job_id: str, state: State, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := queue.get(job_id).state) is not state:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"job {job_id} is {found.value}, not {state.value}, after {timeout} s"
            )
        time.sleep(0.005)


def kill_latencies(samples: int = 30) -> list[float]:
    """The floor: seconds from this process's ``os.killpg(pgid, SIGTERM)`` returning to the
    group being gone, for the same job's group started by a child subreaper that reaps its
    children (the shell, the orphaned ``sleep``) as soon as they die."""
    latencies = []
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder:
        reaper = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.control", "reaper"],
            stdin=subprocess.PIPE,
            text=True,
        )
        assert reaper.stdin is not None
        try:
            for n, gap in enumerate(_gaps(samples)):
                path = Path(folder) / f"pgid-{n}"
                reaper.stdin.write(SLEEPER.format(path=path) + "\n")
                reaper.stdin.flush()
                pgid = _read_pgid(path)
                time.sleep(gap)
                os.killpg(pgid, signal.SIGTERM)
                start = time.perf_counter()
                latencies.append(_until_gone(pgid) - start)
        finally:
            reaper.stdin.close()
            reaper.wait(timeout=30)
    return latencies


def _reaper() -> None:
    """Start each command read from stdin in a session of its own; reap every child (and
    adopted orphan) as soon as it dies."""
    from queuectl.worker.subreaper import set_child_subreaper

    problem = set_child_subreaper()
    if problem is not None:
        print(f"reaper: not a child subreaper ({problem})", file=sys.stderr)

    def reap() -> None:
        while True:
            try:
                os.wait()
            except ChildProcessError:  # no child at the moment
                time.sleep(0.001)

    threading.Thread(target=reap, daemon=True).start()
    for line in sys.stdin:
        os.posix_spawn("/bin/sh", ["/bin/sh", "-c", line.strip()], os.environ, setsid=True)


# -- live output -------------------------------------------------------------------------------


def _span(queue: queuectl.Queue) -> float:
    """Seconds from the first attempt's start to the last one's finish."""
    attempts = queue.attempt_records()
    ends = [a.finished_at for a in attempts if a.finished_at is not None]
    return (max(ends) - min(a.started_at for a in attempts)).total_seconds()


def drain_rate(
    report_output: bool, total: int = 2000, threads: int = 4, command: str = "true"
) -> float:
    """Jobs per second for a pool process of ``threads`` (``worker run --until-empty``, with
    live output on or off) draining ``total`` queued jobs."""
    with fresh_queue() as queue:
        queue.enqueue_many([command] * total)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.control",
                "worker-run",
                "on" if report_output else "off",
                "--count",
                str(threads),
                "--until-empty",
            ],
            env={**os.environ, "QUEUECTL_DB": queue.db},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=600,
        )
        assert queue.counts()[State.COMPLETED] == total
        return total / _span(queue)


def sleep_efficiency(
    report_output: bool, total: int = 1000, threads: int = 4, seconds: float = 0.05
) -> float:
    """Ideal time over actual time for ``total`` x ``sleep seconds`` on ``threads`` threads."""
    return drain_rate(report_output, total, threads, f"sleep {seconds}") * seconds / threads


def _worker_run(report_output: bool, args: list[str]) -> int:
    """``queuectl worker run ARGS``, its pool's live output on or off."""
    from queuectl import cli
    from queuectl.worker import pool

    class Pool(pool.WorkerPool):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("report_output", report_output)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    setattr(pool, "WorkerPool", Pool)  # noqa: B010 (the CLI imports it when it runs)
    return cli.main(["worker", "run", *args])


def output_writes_per_second(seconds: float = 3.0) -> float:
    """Writes of live output per second of a job that prints a line every 10 ms for about
    ``seconds`` (counted at the store, for a pool in this process)."""
    from queuectl.worker.pool import WorkerPool

    lines = round(seconds / 0.01)
    command = f"i=0; while [ $i -lt {lines} ]; do echo line $i; i=$((i + 1)); sleep 0.01; done"
    with fresh_queue() as queue:
        job_id = queue.enqueue(command)
        store = queuectl.connect(queue.db).store
        writes = 0
        record_output = store.record_output

        def counted(fence: Fence, result: RunResult) -> bool:
            nonlocal writes
            writes += 1
            return record_output(fence, result)

        setattr(store, "record_output", counted)  # noqa: B010
        pool = WorkerPool(store, 1, until_empty=True)
        pool.start()
        pool.join()
        store.close()
        (attempt,) = queue.attempt_records(job_id)
        assert attempt.outcome is Outcome.COMPLETED and attempt.finished_at is not None
        ran = (attempt.finished_at - attempt.started_at).total_seconds()
        return writes / ran


# -- prune ---------------------------------------------------------------------------------------

#: ``total`` finished jobs (completed, finished 50 ms after they were created, 1 ms apart, in
#: 2026), one attempt each, inserted straight into a queue file that queuectl made
_JOBS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :total)
INSERT INTO jobs (id, command, state, attempts, max_retries, priority, run_at, timeout,
                  created_at, updated_at)
SELECT printf('job-%07d', i), 'python train.py --seed ' || i, 'completed', 1, 0, 0,
       :start + i * 0.001, 0, :start + i * 0.001, :start + i * 0.001 + 0.05
FROM n
"""
_ATTEMPTS = """
INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, exit_code, outcome,
                      stdout_bytes, stderr_bytes)
SELECT id, 1, 'bench:1:0000', created_at, updated_at, 0, 'completed', 0, 0 FROM jobs
ORDER BY seq
"""
_START = 1767225600.0  # 2026-01-01T00:00:00Z


def build_finished_queue(db: str, total: int) -> None:
    """Make a queue at ``db`` holding ``total`` completed jobs with one attempt each."""
    queuectl.connect(db).close()  # the file, its schema and pragmas, as queuectl makes them
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # building, not measuring
        conn.execute("BEGIN")
        conn.execute(_JOBS, {"total": total, "start": _START})
        conn.execute(_ATTEMPTS)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def prune_seconds(total: int = 1_000_000) -> float:
    """Seconds ``Queue.prune(0)`` takes to delete ``total`` finished jobs and their attempts
    (one call, one transaction)."""
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder:
        db = str(Path(folder) / "queue.db")
        build_finished_queue(db, total)
        with queuectl.connect(db) as queue:
            assert queue.counts()[State.COMPLETED] == total
            start = time.perf_counter()
            pruned = queue.prune(0)
            elapsed = time.perf_counter() - start
            assert pruned == total and not queue.attempt_records()
    return elapsed


def main() -> None:
    what, args = sys.argv[1], sys.argv[2:]
    if what == "worker-run":
        sys.exit(_worker_run(args[0] == "on", args[1:]))
    elif what == "reaper":
        _reaper()
    else:
        raise SystemExit(f"unknown child {what}")


if __name__ == "__main__":
    main()
