"""Noticing other processes' commits to an SQLite queue at once, without polling.

In WAL mode every commit, from any process, writes to the ``-wal`` file next to the database.
The kernel reports those writes through inotify (a watch on the folder, which also survives the
WAL file being deleted and made again), so the watcher sleeps in ``select`` at no cost while
nothing happens. A write is seen before its commit is visible (the commit ends with an fsync and
an update of the shared-memory index, which inotify does not report), so after a write the
watcher polls ``PRAGMA data_version`` (which changes when another connection commits) for a
short while and wakes the pool the moment the commit shows.

The watcher also keeps the WAL short. SQLite copies the WAL back into the database (a
checkpoint) in whichever commit makes it pass 1,000 pages; that commit then waits for the
fsync of everything written since, and in a busy pool every other thread waits behind it for
the write lock. So while commits come in, the watcher runs a passive checkpoint itself every
``CHECKPOINT_EVERY`` seconds, which does not block writers: the commit that passes 1,000 pages
then finds little left to copy and to fsync.
"""

from __future__ import annotations

import contextlib
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from queuectl.logs import worker_log

log = worker_log

#: how long after a write to the WAL the watcher looks for its commit, and how often
COMMIT_WAIT = 0.25
COMMIT_POLL = 0.0005
#: after a wake-up, how long further commits are left to pile up: a busy queue (whose pools
#: have no idle thread to wake anyway) costs the watcher a few hundred checks a second at most
COALESCE = 0.002
#: seconds between two checkpoints by the watcher while commits come in (a busy pool writes a
#: few thousand pages a second)
CHECKPOINT_EVERY = 0.05


def watch_commits(database: Path, notify: Callable[[], None]) -> Callable[[], None]:
    """Call ``notify`` after each commit to ``database``; return a function that stops.

    Where inotify is unavailable (another OS, the watch limit reached), nothing is watched and
    the pool relies on polling; that is logged, not raised.
    """
    try:
        from inotify_simple import INotify, flags

        inotify = INotify()
        inotify.add_watch(
            database.parent, flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.CLOSE_WRITE
        )
    except (ImportError, OSError) as exc:
        log.warning("cannot watch %s for commits (%s); polling instead", database, exc)
        return lambda: None
    # Commits go to the WAL only; the database file changes in checkpoints (our own, too).
    wal = f"{database.name}-wal"
    stop_reader, stop_writer = os.pipe()

    def loop() -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            seen = _data_version(conn)
            checkpointed = time.monotonic()
            while True:
                ready, _, _ = select.select([inotify.fileno(), stop_reader], [], [])
                if stop_reader in ready:
                    return
                events = inotify.read(timeout=0)
                if any(e.name == wal or e.mask & flags.Q_OVERFLOW for e in events):
                    seen = _await_commit(conn, seen, notify)
                    if time.monotonic() - checkpointed >= CHECKPOINT_EVERY:
                        _checkpoint(conn)
                        checkpointed = time.monotonic()
                    time.sleep(COALESCE)
        except Exception:  # a watcher must never take its pool down, nor print
            log.exception("watching %s for commits failed; polling instead", database)
        finally:
            if conn is not None:
                conn.close()
            inotify.close()
            os.close(stop_reader)

    thread = threading.Thread(target=loop, name="queuectl-watch", daemon=True)
    thread.start()

    def stop() -> None:
        with contextlib.suppress(OSError):  # the loop may have ended already (and logged why)
            os.write(stop_writer, b"x")
        thread.join(timeout=5)
        os.close(stop_writer)

    return stop


def _data_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA data_version").fetchone()[0]
    return version


def _await_commit(conn: sqlite3.Connection, seen: int, notify: Callable[[], None]) -> int:
    """Poll briefly for a commit by another connection; notify once it shows."""
    deadline = time.monotonic() + COMMIT_WAIT
    while True:
        version = _data_version(conn)
        if version != seen:
            notify()
            return version
        if time.monotonic() > deadline:
            return seen  # a write that committed nothing yet (or was rolled back)
        time.sleep(COMMIT_POLL)


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy committed pages from the WAL into the database, without waiting for anyone."""
    # A failed checkpoint is harmless (a later one, or a commit, does it): it must not end
    # the watching.
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
