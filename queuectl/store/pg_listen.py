"""Wake-ups across hosts: a thread that LISTENs for the queue's NOTIFY and passes it on.

Triggers send a notification on the channel ``pg_schema.CHANNEL`` whenever a job becomes
claimable, a running job gets a cancel request, or the queue is resumed. The listener holds a
connection of its own (LISTEN belongs to a session) and calls ``notify`` for each notification on
it, whatever its payload: the pool then looks at the queue (claims, cancel requests) itself.
Notifications sent while it is disconnected are lost, so after every (re)connect and every
failure it calls ``notify`` once more, and the pool looks for work itself. It reconnects with
exponential backoff, logs to ``queuectl.worker`` like the pool, and never prints nor raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from queuectl.errors import StoreError
from queuectl.logs import worker_log
from queuectl.store import pg_schema

log = worker_log

#: seconds between checks of the stop flag while no notification arrives
POLL = 0.5
#: the longest ``join`` waits for the thread by default
STOP_WAIT = 5.0
RETRY_FIRST = 0.1
RETRY_MAX = 5.0


class Listener:
    """A daemon thread forwarding the queue's notifications to ``notify``."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        notify: Callable[[], None],
        explain: Callable[[BaseException], StoreError],
    ) -> None:
        self._connect = connect
        self._notify = notify
        self._explain = explain
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queuectl-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; the thread closes its connection and ends within ``POLL`` seconds
        (see ``join``)."""
        self._stop.set()

    def join(self, timeout: float | None = STOP_WAIT) -> bool:
        """Wait for the thread to end (by default at most ``STOP_WAIT`` seconds, should its
        connection hang); True if it has."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        delay = RETRY_FIRST
        failing = False
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {pg_schema.CHANNEL}")
                    if failing:
                        log.info("wake-ups work again")
                    failing, delay = False, RETRY_FIRST
                    self._notify()  # whatever was sent before we listened is lost: look now
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=POLL):
                            self._notify()
            except Exception as exc:  # a daemon thread must neither die nor print
                if not failing:
                    reason = self._explain(exc).message
                    log.warning("wake-ups paused, polling only: %s", reason)
                failing = True
                self._notify()
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
