"""What looking for a job's escaped processes costs at the end of each attempt.

Measured in a child process (``python -m benchmarks.escapes MODE CALLS THREADS``), as a pool
process would pay it: ``adopting`` is a child subreaper that lists its children (one read per
thread of the process, here ``THREADS`` worker threads, a heartbeat and the main thread);
``scanning`` (a notebook's kernel) reads the environment of every process on the machine. The
attempts left nothing behind, the common case: the figure is the price of looking.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from queuectl.worker import procfs
from queuectl.worker.escapes import TRACKER, Marker
from queuectl.worker.subreaper import adopt_orphans


def end_of_attempt_micros(mode: str, calls: int = 2000, threads: int = 4) -> float:
    """Microseconds per attempt end spent looking for escaped processes (median of 5 batches)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.escapes", mode, str(calls), str(threads)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout)


def process_count() -> int:
    """Processes on this machine: what the scanning mode's cost grows with."""
    return len(procfs.pids())


def _measure(calls: int, threads: int) -> float:
    idle = threading.Event()
    pool = [threading.Thread(target=idle.wait, daemon=True) for _ in range(threads + 1)]
    for thread in pool:
        thread.start()
    # One shell that has exited and is not reaped, as when the runner ends an attempt.
    shell = subprocess.Popen(["true"])
    os.waitid(os.P_PID, shell.pid, os.WEXITED | os.WNOWAIT)
    batches = []
    for batch in range(5):
        spent = 0.0
        for n in range(calls // 5):
            marker = Marker(f"bench-{batch}-{n}", "1", "bench-pool")
            _, attempt = TRACKER.start(marker, lambda: shell, lambda p: p.pid)
            start = time.perf_counter()
            TRACKER.end(attempt)
            spent += time.perf_counter() - start
            TRACKER.forget(shell.pid)
        batches.append(spent / (calls // 5) * 1e6)
    idle.set()
    shell.wait()
    return sorted(batches)[2]


def main() -> None:
    mode, calls, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "adopting":
        with adopt_orphans() as adopting:
            assert adopting, "this system cannot make a process a child subreaper"
            print(_measure(calls, threads))
    elif mode == "scanning":
        print(_measure(calls, threads))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
