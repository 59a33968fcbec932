"""`queuectl migrate --to`: a whole queue moves between stores, or nothing happens at all."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.api import connect
from tests.conftest import QUEUECTL, Cli, wait_for
from tests.pg_server import PgServer

MakeQueue = Callable[[str], str]


@pytest.fixture
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeQueue]:
    """Makes empty queues of either kind: an SQLite path or a new PostgreSQL database."""
    databases: list[str] = []
    files = iter(range(1000))
    server: PgServer | None = None

    def make(kind: str) -> str:
        nonlocal server
        if kind == "sqlite":
            return str(tmp_path / f"queue{next(files)}.db")
        server = server or request.getfixturevalue("pg_server")
        databases.append(server.create_database())
        return databases[-1]

    yield make
    for url in databases:
        assert server is not None
        server.drop_database(url)


DIRECTIONS = [
    pytest.param(("sqlite", "postgres"), id="sqlite-to-postgres", marks=pytest.mark.postgres),
    pytest.param(("postgres", "sqlite"), id="postgres-to-sqlite", marks=pytest.mark.postgres),
]


def seeded_source(location: str, tmp_path: Path) -> Cli:
    """A queue with jobs in every finished and waiting state, retries and binary output."""
    marker = tmp_path / "flaky-ran-once"
    with connect(location) as queue:
        for key, value in [("lease_seconds", 1), ("backoff_max", 0), ("poll_interval_ms", 20)]:
            queue.set_config(key, value)
        queue.set_config("max_retries", 1)
        queue.enqueue("printf '\\377bytes'", id="ok")
        queue.enqueue(f"test -e {marker} || {{ touch {marker}; exit 4; }}", id="flaky")
        queue.enqueue("exit 3", id="bad", max_retries=0)
        queue.run_workers(2, until_empty=True)
        queue.enqueue("echo later", id="later", priority=7, run_at="2999-01-01T00:00:00Z")
    return Cli(location, tmp_path / "home")


def snapshot(location: str) -> tuple[Any, ...]:
    """Everything a user can see of a queue: jobs, attempts with output, configuration."""
    with connect(location) as queue:
        return queue.job_records(), queue.attempt_records(), queue.config()


@pytest.mark.parametrize("kinds", DIRECTIONS)
def test_migrate_copies_jobs_attempts_and_config(
    make_queue: MakeQueue, tmp_path: Path, kinds: tuple[str, str]
) -> None:
    source = seeded_source(make_queue(kinds[0]), tmp_path)
    target = Cli(make_queue(kinds[1]), tmp_path / "home")
    before = snapshot(source.db)
    assert [j.state for j in before[0]] == ["pending", "dead", "completed", "completed"]
    unchanged = source.checksum()

    out = source.run("migrate", "--to", target.db).stdout
    assert out.startswith("Copied 4 job(s), 4 attempt(s) and the configuration from ")
    assert "***" in out or kinds[1] == "sqlite"  # a password in a URL is never shown
    assert snapshot(target.db) == before
    assert target.json("show", "flaky") == source.json("show", "flaky")
    assert source.checksum() == unchanged
    raw = subprocess.run([QUEUECTL, "logs", "ok"], env=target.env, capture_output=True)
    assert raw.stdout == b"\xffbytes"

    # The copy is a working queue: a dead job retried there runs there.
    target.run("dlq", "retry", "bad")
    pool = target.popen("worker", "run", stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: target.json("show", "bad")["state"] == "dead", what="the retry")
    finally:
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=30) == 0
    history = target.json("show", "bad")["history"]
    assert [a["outcome"] for a in history] == ["failed", "failed"]
    assert target.json("show", "later")["state"] == "pending"  # still waiting for its time


@pytest.mark.parametrize("kinds", DIRECTIONS)
def test_migrate_into_a_queue_with_jobs_is_refused_and_changes_nothing(
    make_queue: MakeQueue, tmp_path: Path, kinds: tuple[str, str]
) -> None:
    source = seeded_source(make_queue(kinds[0]), tmp_path)
    target = Cli(make_queue(kinds[1]), tmp_path / "other-home")
    target.run("enqueue", "--id", "mine", "echo mine")
    before = (source.checksum(), target.checksum())
    proc = source.run("migrate", "--to", target.db, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: the queue ") and "has 1 job(s) already" in proc.stderr
    assert "copy only into an empty queue" in proc.stderr
    assert (source.checksum(), target.checksum()) == before


def test_migrate_while_a_pool_serves_the_source_is_refused_before_the_target_exists(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    source = Cli(make_queue("sqlite"), tmp_path / "home")
    target = Cli(make_queue("sqlite"), tmp_path / "home")
    source.run("enqueue", "--id", "a", "echo a")
    pool = source.popen("worker", "run", stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: source.json("status")["workers"], what="the pool")
        proc = source.run("migrate", "--to", target.db, check=False)
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=30)
    assert proc.returncode == 2
    assert "worker pool(s) still serve" in proc.stderr and "queuectl worker stop" in proc.stderr
    assert not target.exists()
