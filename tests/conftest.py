"""Shared fixtures: isolated queue homes, real stores of both kinds, the installed CLI.

Tests that take ``queue_target`` (or ``new_queue``, or ``cli``) run once per store: on an SQLite
file and on a database of the PostgreSQL server that the session starts itself (see
``tests/pg_server.py``). Without PostgreSQL's server programs the PostgreSQL runs are skipped,
with the reason in the summary; under CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from queuectl.api import connect
from queuectl.store.sqlite import SqliteStore
from tests.pg_server import PgServer, destroy_session_server, queue_digest, session_server

# The developer's own queue settings must never leak into a test. (QUEUECTL_SCREENSHOTS is no
# queue setting: it names where the browser tests also save their screenshots.)
for _name in [n for n in os.environ if n.startswith("QUEUECTL_")]:
    if _name != "QUEUECTL_SCREENSHOTS":
        del os.environ[_name]

QUEUECTL = str(Path(sys.executable).with_name("queuectl"))


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Gate:
    """A job command that blocks until the test releases it: no sleep decides who is first.

    ``command`` touches a marker, then reads a line from a FIFO: it runs until ``release()``
    writes that line. So a test can act (stop a pool, restart it) while the job is certainly
    still running, and let it finish when it chooses.
    """

    def __init__(self, folder: Path, name: str = "gate") -> None:
        self.started = folder / f"{name}.started"
        self.fifo = folder / f"{name}.fifo"
        os.mkfifo(self.fifo, 0o600)

    def command(self, then: str = "echo finished") -> str:
        started, fifo = shlex.quote(str(self.started)), shlex.quote(str(self.fifo))
        return f"touch {started}; read line < {fifo}; {then}"

    def wait_started(self) -> None:
        wait_for(self.started.exists, what=f"the job behind {self.fifo.name} to start")

    def release(self) -> None:
        """Let the job go on. Waits until it has the FIFO open: the job must be running."""

        def open_for_writing() -> list[int] | None:
            try:  # non-blocking: fails (ENXIO) until the job opened its end for reading
                return [os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)]
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                return None

        (fd,) = wait_for(open_for_writing, what=f"the job to read {self.fifo.name}")
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)


class LogLines:
    """Collects the lines a process writes to a pipe (its log), as they come."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.append(raw.decode("utf-8", "replace"))

    def close(self) -> None:
        """After the process has exited: the rest of its output, then close the pipe."""
        self._reader.join(timeout=30)
        self._stream.close()

    def wait_for(self, text: str) -> str:
        """The first line containing ``text``, once the process has written it."""
        return str(
            wait_for(
                lambda: next((line for line in self.lines if text in line), None),
                what=f"a log line with {text!r}",
            )
        )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh QUEUECTL_HOME for this test (not yet created)."""
    path = tmp_path / "home"
    monkeypatch.setenv("QUEUECTL_HOME", str(path))
    return path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session, stopped and deleted at its end."""
    try:
        yield session_server()
    finally:
        destroy_session_server()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Which store a test runs on."""
    return str(request.param)


#: for the slowest end-to-end tests whose PostgreSQL half adds little to the contract suite and
#: the other end-to-end tests: that half runs in ``make soak`` (``@PostgresInSoak`` on the test)
PostgresInSoak = pytest.mark.parametrize(
    "backend",
    ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.soak])],
    indirect=True,
)


@pytest.fixture
def new_queue(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes locations of fresh, empty queues of the test's store: files or new databases."""
    made: list[str] = []
    server: PgServer | None = None

    def make() -> str:
        nonlocal server
        if backend == "sqlite":
            made.append(str(tmp_path / ("queue.db" if not made else f"queue{len(made)}.db")))
        else:
            server = server or request.getfixturevalue("pg_server")
            made.append(server.create_database())
        return made[-1]

    yield make
    if server is not None:
        for url in made:
            server.drop_database(url)


@pytest.fixture
def queue_target(new_queue: Callable[[], str]) -> str:
    """The location of a fresh queue: an SQLite file path or a PostgreSQL URL."""
    return new_queue()


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Cli:
    """Runs the installed ``queuectl`` command against one queue (a file or a URL)."""

    def __init__(self, db: str | Path, home: Path) -> None:
        self.db = str(db)
        self.env = {**os.environ, "QUEUECTL_HOME": str(home), "QUEUECTL_DB": self.db}

    def run(
        self,
        *args: str,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [QUEUECTL, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=None if input is None else input.decode(),
            cwd=cwd,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"queuectl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([QUEUECTL, *args], env=self.env, **kwargs)

    def checksum(self) -> str:
        """Digest of the queue's content (SQLite: the file and its WAL): proof that nothing
        was written."""
        if is_postgres(self.db):
            return queue_digest(self.db)
        digest = hashlib.sha256()
        for suffix in ("", "-wal"):
            path = Path(f"{self.db}{suffix}")
            digest.update(path.read_bytes() if path.exists() else b"<absent>")
        return digest.hexdigest()

    def exists(self) -> bool:
        """Whether the queue has been created (SQLite: its file; PostgreSQL: its schema)."""
        if is_postgres(self.db):
            return queue_digest(self.db) != "<no queue>"
        return Path(self.db).exists()


@pytest.fixture
def cli(queue_target: str, tmp_path: Path) -> Cli:
    """The installed CLI on a fresh queue whose tests run with small leases and backoff."""
    with connect(queue_target) as queue:  # the API, not three more CLI starts per test
        queue.set_config("lease_seconds", 1)
        queue.set_config("backoff_max", 0)
        queue.set_config("poll_interval_ms", 20)
    return Cli(queue_target, tmp_path / "home")
