"""The connections of an SQLite queue: one per thread, one writer at a time, errors translated.

Concurrency: SQLite has one writer at a time. Every read-then-write runs inside
``BEGIN IMMEDIATE``, which takes the write lock up front so that contending writers wait on the
busy timeout instead of failing with "database is locked". Threads of one process queue on a
mutex before that, which hands over at once; SQLite's busy handler, left for other processes,
sleeps in steps of up to 100 ms.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from queuectl.errors import SchemaTooNew, StoreError
from queuectl.store import schema
from queuectl.store.connections import PerThread


class _Connection(sqlite3.Connection):
    """A connection that remembers its ``synchronous`` setting, to change it only when needed."""

    synchronous = "FULL"  # what ``schema.prepare`` sets

    def set_synchronous(self, mode: str) -> None:
        if mode != self.synchronous:
            self.execute(f"PRAGMA synchronous = {mode}")
            self.synchronous = mode


class SqliteConnections:
    """Connections to one database file, opened per thread with the schema made current."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conns = PerThread(self._open, _Connection.close)
        self._writer = threading.Lock()
        #: how long this process has held the database's write lock, in all (for ``make bench``:
        #: the share of time a stopped pool would most likely be caught holding it)
        self.lock_seconds = 0.0

    def _open(self) -> _Connection:
        with self.translate():
            conn = sqlite3.connect(
                self.path,
                timeout=schema.BUSY_SECONDS,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
            )
            try:
                schema.prepare(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def connection(self) -> _Connection:
        """The calling thread's connection."""
        return self._conns.get()

    def close(self) -> None:
        """Close every connection, whichever thread opened it."""
        self._conns.close_all()

    def release(self) -> None:
        """Close the calling thread's connection."""
        self._conns.release()

    @contextmanager
    def translate(self) -> Iterator[None]:
        """Turn ``sqlite3`` errors into ``StoreError`` with a message that says what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            error = SchemaTooNew if isinstance(exc, schema.TooNew) else StoreError
            raise error(schema.explain(exc, self.path)) from exc

    @contextmanager
    def hold_writes(self) -> Iterator[None]:
        """No write transaction of this process runs inside this block (see ``write``)."""
        with self._writer:
            yield

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. ``durable``: on disk when it returns (``synchronous=FULL``).

        A worker's own bookkeeping (claims, results, leases, heartbeats) commits with
        ``synchronous=NORMAL``, which saves an fsync per commit: a power cut may undo the last
        few, and the job then runs again (delivery is at least once). What users write
        (enqueues, retries, configuration, stop requests) is always durable.
        """
        conn = self.connection()
        with self._writer, self.translate():
            conn.set_synchronous("FULL" if durable else "NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            locked_at = time.perf_counter()
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # never leave the connection inside a transaction
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            finally:
                self.lock_seconds += time.perf_counter() - locked_at

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that all see the same state of the database (one read transaction; inside
        another, that one)."""
        conn = self.connection()
        if conn.in_transaction:
            yield conn
            return
        with self.translate():
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:  # (SQLite may have ended it on an I/O error)
                    conn.execute("COMMIT")  # (a read transaction: nothing to undo)

    def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """All rows of one query (in a ``snapshot`` block, in its transaction)."""
        with self.translate():
            return self.connection().execute(sql, params).fetchall()
