"""``PerThread``: which connections closing a store closes, and which it leaves to their thread."""

from __future__ import annotations

import gc
import threading

from queuectl.store.connections import PerThread
from tests.conftest import wait_for


class Handle:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def in_thread(
    conns: PerThread[Handle], then: threading.Event | None = None
) -> tuple[Handle, threading.Thread]:
    """A connection opened by a new thread, which then ends, or waits for ``then`` and releases."""
    got: list[Handle] = []
    opened = threading.Event()

    def run() -> None:
        got.append(conns.get())
        opened.set()
        if then is not None:
            then.wait(10)
            conns.release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert opened.wait(10)
    return got[0], thread


def test_close_all_closes_the_callers_and_ended_threads_connections() -> None:
    conns = PerThread(Handle, Handle.close)
    mine = conns.get()
    ended, thread = in_thread(conns)
    thread.join(10)
    conns.close_all()
    assert mine.closed and ended.closed
    assert conns.get() is not mine  # the store opens again on use


def test_a_live_threads_connection_is_closed_by_that_thread() -> None:
    conns = PerThread(Handle, Handle.close)
    release = threading.Event()
    theirs, _ = in_thread(conns, then=release)
    conns.close_all()
    assert not theirs.closed  # it may be in the middle of a statement
    release.set()
    wait_for(lambda: theirs.closed, what="the thread to close its own connection")


def test_a_thread_that_ends_without_releasing_closes_its_connection() -> None:
    conns = PerThread(Handle, Handle.close)
    theirs, thread = in_thread(conns)
    thread.join(10)
    wait_for(lambda: theirs.closed, what="the ended thread's connection to close")


def test_a_store_dropped_unclosed_closes_its_connections() -> None:
    conns = PerThread(Handle, Handle.close)
    mine = conns.get()
    del conns
    gc.collect()
    assert mine.closed
