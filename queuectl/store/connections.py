"""One database connection per thread, for both stores.

Neither sqlite3 nor psycopg connections may serve two threads at once, and a worker pool has
many threads; so each thread opens its own on first use, and the store closes them all at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

C = TypeVar("C")


class PerThread(Generic[C]):
    """Connections made by ``open`` on first use in each thread, closed by ``close``."""

    def __init__(self, open: Callable[[], C], close: Callable[[C], None]) -> None:
        self._open = open
        self._close = close
        self._local = threading.local()
        self._all: list[C] = []
        self._lock = threading.Lock()

    def get(self) -> C:
        """The calling thread's connection, opened now if it has none."""
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def peek(self) -> C | None:
        """The calling thread's connection if it has one."""
        conn: C | None = getattr(self._local, "conn", None)
        return conn

    def release(self) -> None:
        """Close the calling thread's connection (the next ``get`` opens a new one)."""
        conn: C | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._all.remove(conn)
            self._close(conn)

    def close_all(self) -> None:
        """Close every connection, whichever thread opened it."""
        with self._lock:
            for conn in self._all:
                self._close(conn)
            self._all.clear()
        self._local = threading.local()
