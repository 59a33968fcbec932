"""How an idle pool waits for work: the one place a faster mechanism plugs in.

An idle worker thread sleeps for ``poll_interval`` or until it is woken: by its own pool (a job
finished, a stop was asked for), or by the store. A pool hands ``notify`` to ``Store.watch``
as it starts, so a store that can see other processes' writes wakes it: PostgreSQL through
LISTEN/NOTIFY; SQLite's ``PRAGMA data_version`` can plug into the same hook.
"""

from __future__ import annotations

import threading


class Wakeup:
    """A broadcast signal: ``notify()`` wakes every thread in ``wait()``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True when woken by ``notify()``."""
        with self._cond:
            seen = self._generation
            return self._cond.wait_for(lambda: self._generation != seen, timeout)

    def notify(self) -> None:
        """Wake every waiting thread."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
