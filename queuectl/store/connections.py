"""One database connection per thread, for both stores.

Neither sqlite3 nor psycopg connections may serve two threads at once, and a worker pool has
many threads; so each thread opens its own on first use. Closing the store closes those no
thread can be using; a live thread's connection is closed by that thread (see ``close_all``).
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
        self._all: list[tuple[C, threading.Thread]] = []
        self._lock = threading.Lock()

    def get(self) -> C:
        """The calling thread's connection, opened now if it has none."""
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append((conn, threading.current_thread()))
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
                self._all = [(c, owner) for c, owner in self._all if c is not conn]
            self._close(conn)

    def close_all(self) -> None:
        """Close the calling thread's connection and those of threads that have ended.

        Another live thread may be in the middle of a statement, and closing a connection under
        it can crash the interpreter (sqlite3 does); so its connection stays open until that
        thread calls ``release``, as pool threads do when they end (e.g. after
        ``Queue.close(wait=False)``, while their last jobs finish).
        """
        me = threading.current_thread()
        closing: list[C] = []
        with self._lock:
            kept: list[tuple[C, threading.Thread]] = []
            for conn, owner in self._all:
                if owner is me or not owner.is_alive():
                    closing.append(conn)
                else:
                    kept.append((conn, owner))
            self._all = kept
            self._local.conn = None
        for conn in closing:
            self._close(conn)
