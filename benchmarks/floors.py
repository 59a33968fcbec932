"""What this machine can do at best, measured in the same run as the queue figures."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def spawn_rate(threads: int = 4, total: int = 2000) -> float:
    """``sh -c true`` processes per second, started from ``threads`` threads of one process."""
    per_thread = total // threads

    def spawn() -> None:
        for _ in range(per_thread):
            subprocess.run(["sh", "-c", "true"], check=True)

    workers = [threading.Thread(target=spawn) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - start)


def sqlite_commit_rate(synchronous: str, total: int = 2000) -> float:
    """Single-row INSERT transactions per second in a WAL database."""
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        start = time.perf_counter()
        for n in range(total):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (str(n),))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return total / elapsed


def import_click_seconds() -> float:
    """Wall time of ``python -c "import click"``: the least a click CLI can cost."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import click"], check=True)
    return time.perf_counter() - start
