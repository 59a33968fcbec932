"""Running a pool in the foreground: the signals a terminal sends, and what they mean.

SIGTERM, SIGINT or SIGHUP (the terminal was closed) stop the pool gracefully, a second one
stops it now. SIGTSTP (Ctrl-Z) suspends the pool once no write of it is under way.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from queuectl.logs import worker_log as log

if TYPE_CHECKING:
    from queuectl.worker.pool import WorkerPool


def run(pool: WorkerPool) -> None:
    """Run ``pool`` until it has stopped, with the handlers of the signals in place (in the
    main thread only: elsewhere Python cannot install them).

    The handlers are in place before the pool registers: whoever sees it registered may
    signal it, and a stop that comes before the threads start ends them at once.
    """
    in_main = threading.current_thread() is threading.main_thread()
    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if in_main else ()
    previous = {sig: signal.getsignal(sig) for sig in (*stops, signal.SIGTSTP) if in_main}

    received = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1  # a stop request from the store does not count: only signals do
        how = "now" if received > 1 else "gracefully"
        log.info("pool %s: %s, stopping %s", pool.worker_id, signal.Signals(signum).name, how)
        pool.stop(now=received > 1)

    def on_suspend(signum: int, frame: FrameType | None) -> None:
        # Not here: the main thread may itself be inside a write (registering).
        threading.Thread(target=suspend, args=(pool,), name="queuectl-suspend", daemon=True).start()

    for sig in stops:
        signal.signal(sig, on_signal)
    if in_main:
        signal.signal(signal.SIGTSTP, on_suspend)
    try:
        pool.start()
        while not pool.join(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def suspend(pool: WorkerPool) -> None:
    """Stop this process as Ctrl-Z asked, but never inside a write transaction.

    A process stopped while it holds SQLite's write lock locks every other process of the
    queue out until it is continued. Holding the store's write side first means no thread
    of the pool is inside a transaction, nor can start one, while the process is stopped.
    (SIGSTOP cannot be caught: see the README on recovering with ``kill -CONT``.)
    """
    with pool.store.hold_writes():
        os.kill(os.getpid(), signal.SIGSTOP)
