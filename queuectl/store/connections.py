"""One database connection per thread, for both stores.

Neither sqlite3 nor psycopg connections may serve two threads at once, and a worker pool has
many threads; so each thread opens its own on first use, and it is closed when that thread
releases it or ends. Closing the store closes at once only those no thread can be using (see
``close_all``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

C = TypeVar("C")


class _Held(Generic[C]):
    """A thread's connection, kept in that thread's locals: when the thread ends they are
    cleared, and the connection is closed (by a finalizer) without anyone calling ``release``."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: C) -> None:
        self.conn = conn


class PerThread(Generic[C]):
    """Connections made by ``open`` on first use in each thread, closed by ``close``."""

    def __init__(self, open: Callable[[], C], close: Callable[[C], None]) -> None:
        self._open = open
        self._close = close
        self._local = threading.local()
        self._open_now: list[tuple[C, threading.Thread]] = []  # not closed yet, and whose
        self._lock = threading.Lock()

    def get(self) -> C:
        """The calling thread's connection, opened now if it has none."""
        held: _Held[C] | None = getattr(self._local, "held", None)
        if held is None:
            held = _Held(self._open())
            with self._lock:
                self._open_now.append((held.conn, threading.current_thread()))
            # (Not at interpreter exit: daemon threads may still be using their connections.)
            finalizer = weakref.finalize(held, _forget, weakref.ref(self), self._close, held.conn)
            finalizer.atexit = False
            self._local.held = held
        return held.conn

    def peek(self) -> C | None:
        """The calling thread's connection if it has one."""
        held: _Held[C] | None = getattr(self._local, "held", None)
        return None if held is None else held.conn

    def release(self) -> None:
        """Close the calling thread's connection (the next ``get`` opens a new one)."""
        self._local.held = None  # its finalizer closes it

    def close_all(self) -> None:
        """Close the calling thread's connection and those of threads that have ended.

        Another live thread may be in the middle of a statement, and closing a connection under
        it can crash the interpreter (sqlite3 does); so its connection stays open until that
        thread releases it or ends (pool threads release theirs when they stop, e.g. after
        ``Queue.close(wait=False)``, once their last jobs are recorded).
        """
        me = threading.current_thread()
        closing: list[C] = []
        with self._lock:
            kept: list[tuple[C, threading.Thread]] = []
            for conn, owner in self._open_now:
                if owner is me or not owner.is_alive():
                    closing.append(conn)
                else:
                    kept.append((conn, owner))
            self._open_now = kept
        self._local.held = None  # (outside the lock: its finalizer takes it)
        for conn in closing:
            self._close(conn)

    def _discard(self, conn: C) -> bool:
        """Forget ``conn``; True if it was still open."""
        with self._lock:
            was_open = any(c is conn for c, _ in self._open_now)
            self._open_now = [(c, owner) for c, owner in self._open_now if c is not conn]
        return was_open


def _forget(ref: weakref.ref[PerThread[C]], close: Callable[[C], None], conn: C) -> None:
    """A thread's connection is no longer held: close it, unless ``close_all`` has."""
    connections = ref()
    if connections is None or connections._discard(conn):
        close(conn)  # (with the store gone, nobody can be using it)
