"""Fixtures of the reliability suite: the queue under test, pool processes, and figures.

Store-agnostic tests take the queue from ``queue_target`` (a path or URL handed to every process
as ``QUEUECTL_DB``) and look at it only through the CLI or ``queuectl.connect``. Checks that only
make sense for a file (checksums, modes) use the file-based ``cli`` fixture of ``tests/conftest``.
The kill -9 chaos and the concurrent writers run on both stores (``ON_EVERY_STORE``); the
others on SQLite, whose file they may also inspect.

Figures (counts, sizes, how long a run took) are printed at the end of the run, in a section of
the terminal summary, so that they show in ``make test`` output; they are never asserted on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import Cli, wait_for

STORES = ["sqlite"]

#: for the tests that run on every store: ``@ON_EVERY_STORE`` on the test
ON_EVERY_STORE = pytest.mark.parametrize(
    "queue_target", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
#: the same for the heaviest load tests: their PostgreSQL half runs in ``make soak`` (each takes
#: half a minute, and the contract and e2e suites cover that store in ``make test``)
ON_EVERY_STORE_SOAK_POSTGRES = pytest.mark.parametrize(
    "queue_target",
    ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.soak])],
    indirect=True,
)

_FIGURES: list[str] = []


@pytest.fixture(params=STORES)
def queue_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the queue of this test lives, as ``--db`` / ``QUEUECTL_DB`` take it: an SQLite
    file, or (``ON_EVERY_STORE``) also a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "queue.db")
    elif request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        url: str = server.create_database()
        yield url
        server.drop_database(url)
    else:
        raise AssertionError(f"unknown store {request.param}")


@pytest.fixture
def rcli(queue_target: str, tmp_path: Path) -> Cli:
    """The installed CLI on a fresh queue of the store under test; quick polls and retries."""
    c = Cli(queue_target, tmp_path / "home")
    c.run("config", "set", "backoff_max", "0")
    c.run("config", "set", "poll_interval_ms", "20")
    return c


Figure = Callable[[str], None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record one line of figures for the summary at the end of the run (and print it)."""

    def record(line: str) -> None:
        name = request.node.name
        _FIGURES.append(f"{name}: {line}")
        print(f"{name}: {line}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.write_sep("=", "queuectl reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


class Pools:
    """Foreground pool processes (``queuectl worker run``), each logging to its own file."""

    def __init__(self, cli: Cli, log_dir: Path) -> None:
        self.cli = cli
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, count: int = 1, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"pool-{len(self.procs) + 1}.log"
        with open(log, "wb") as out:
            proc = self.cli.popen(
                "worker", "run", "--count", str(count), *args, stdout=out, stderr=out
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def wait_registered(self) -> None:
        """Wait until every live pool has registered (and so handles SIGTERM)."""

        def registered() -> bool:
            pids = {worker["pid"] for worker in self.cli.json("status")["workers"]}
            return {proc.pid for proc in self.live()} <= pids

        wait_for(registered, timeout=60, what="the pools to register")

    def terminate_all(self, timeout: float = 60) -> list[int]:
        """SIGTERM every live pool (a graceful stop) once it runs; return their exit codes."""
        self.wait_registered()
        live = self.live()
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=timeout) for proc in live]

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs)

    def kill_all(self) -> None:
        for proc in self.live():
            proc.kill()
        for proc in self.procs:
            proc.wait()


@pytest.fixture
def pools(rcli: Cli, tmp_path: Path) -> Iterator[Pools]:
    """Pools of the queue under test; whatever still runs at the end is killed."""
    p = Pools(rcli, tmp_path)
    yield p
    p.kill_all()


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line contains ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                zombie = f.read().rpartition(b")")[2].split()[0] == b"Z"
        except OSError:
            continue  # gone meanwhile
        if marker.encode() in cmdline and not zombie:
            found.append(int(entry.name))
    return found


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status``, such as ``VmHWM`` (peak resident memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def freeze(proc: subprocess.Popen[bytes], target: str) -> None:
    """SIGSTOP a pool at a moment it holds no write lock on the queue.

    A process frozen inside a write transaction would block every other writer of an SQLite
    file until it resumes: a property of SQLite, not what a test of leases is about.
    """
    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: _all_threads_stopped(proc.pid), what="the pool to stop")
        if "://" in target or _sqlite_writable(target):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the pool always held the write lock")


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            states.append((task / "stat").read_bytes().rpartition(b")")[2].split()[0])
    return bool(states) and all(state in (b"T", b"t") for state in states)


def _sqlite_writable(path: str) -> bool:
    with closing(sqlite3.connect(path, timeout=0.5, isolation_level=None)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.execute("ROLLBACK")
        return True


def stop_now(pools: list[subprocess.Popen[bytes]], marker: str, timeout: float = 60) -> None:
    """Stop pools with a second SIGTERM, which kills the running jobs named by ``marker``.

    Two signals sent in a row can reach a pool's handler as one, so while a pool still runs a
    marked job it is sent another one a second later. No signal goes to a pool that no longer
    runs one: it may be exiting, its handlers already restored.
    """
    for pool in pools:
        pool.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while holders := {_pool_of(pid, pools) for pid in processes_with(marker)} - {None}:
        assert time.monotonic() < deadline, "the marked jobs survived a stop now"
        time.sleep(1.0)
        for pool in pools:
            if pool.pid in holders and pool.poll() is None:
                pool.send_signal(signal.SIGTERM)


def _pool_of(pid: int, pools: list[subprocess.Popen[bytes]]) -> int | None:
    """The pid of the pool among ``pools`` that ``pid`` descends from, if any."""
    wanted = {pool.pid for pool in pools}
    while pid > 1 and pid not in wanted:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return pid if pid in wanted else None
