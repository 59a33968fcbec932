"""Shared fixtures: isolated queue homes, real SQLite stores, the installed CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.store.sqlite import SqliteStore

# The developer's own queue settings must never leak into a test.
for _name in [n for n in os.environ if n.startswith("QUEUECTL_")]:
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


class Cli:
    """Runs the installed ``queuectl`` command against one queue (a file, or any URL)."""

    def __init__(self, db: Path | str, home: Path) -> None:
        self.db = db
        self.env = {**os.environ, "QUEUECTL_HOME": str(home), "QUEUECTL_DB": str(db)}

    def run(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [QUEUECTL, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=None if input is None else input.decode(),
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
        """Digest of the database and its WAL: proof that nothing was written."""
        digest = hashlib.sha256()
        for suffix in ("", "-wal"):
            path = Path(f"{self.db}{suffix}")
            digest.update(path.read_bytes() if path.exists() else b"<absent>")
        return digest.hexdigest()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The installed CLI on a fresh queue whose tests run with small leases and backoff."""
    c = Cli(tmp_path / "queue.db", tmp_path / "home")
    c.run("config", "set", "lease_seconds", "1")
    c.run("config", "set", "backoff_max", "0")
    c.run("config", "set", "poll_interval_ms", "20")
    return c
