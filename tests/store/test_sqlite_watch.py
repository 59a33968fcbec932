"""The SQLite watcher: wakes a pool on other connections' commits and keeps the WAL short."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from queuectl.model import NewJob
from queuectl.store import sqlite_watch
from queuectl.store.sqlite import SqliteStore
from queuectl.store.sqlite_watch import watch_commits
from tests.conftest import wait_for


def test_a_commit_elsewhere_wakes_the_watcher(store: SqliteStore, db_path: Path) -> None:
    woken = threading.Event()
    stop = watch_commits(db_path, woken.set)
    try:
        assert not woken.wait(0.3)  # nothing committed, nothing to report
        other = SqliteStore(db_path)  # another process's connection, say the CLI's
        other.enqueue([NewJob(command="true", id="a")])
        other.close()
        assert woken.wait(10)
    finally:
        stop()


def test_the_watcher_copies_the_wal_into_the_database(db_path: Path) -> None:
    SqliteStore(db_path).close()
    empty_size = db_path.stat().st_size
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # only the watcher can checkpoint now
    stop = watch_commits(db_path, lambda: None)
    try:
        # In WAL mode only a checkpoint writes to the database file itself: it grows once the
        # watcher has copied these rows (a page each) into it.
        for n in range(5000):
            writer.execute("INSERT INTO config (key, value) VALUES (?, ?)", (f"k{n}", "x" * 4000))
            if db_path.stat().st_size > empty_size:
                break
            time.sleep(0.002)  # one commit at a time, as a pool makes them
        assert db_path.stat().st_size > empty_size
    finally:
        stop()
        writer.close()


def test_a_watcher_that_failed_still_stops(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_watch, "_await_commit", broken)
    stop = watch_commits(db_path, lambda: None)
    store.enqueue([NewJob(command="true", id="a")])  # the watcher fails on this commit
    wait_for(lambda: not any(t.name == "queuectl-watch" for t in threading.enumerate()))
    stop()  # returns, raises nothing
