"""Terminal signals: Ctrl-Z never leaves the queue locked, closing the terminal stops gracefully.

A pool stopped inside an SQLite write transaction would lock every other process of the queue
out until it is continued. SIGTSTP (Ctrl-Z) is caught: the pool stops itself only once no
write of it is under way. SIGSTOP cannot be caught; ``make bench`` measures how often a busy
pool holds the lock, and the README says how to recover (``kill -CONT``).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from queuectl import State, connect
from tests.conftest import Cli, wait_for
from tests.reliability.conftest import Figure, Pools


def stopped(pid: int) -> bool:
    """Whether the process is stopped (state T in /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


def test_ctrl_z_never_leaves_the_write_lock_held(rcli: Cli, pools: Pools, figure: Figure) -> None:
    """Random SIGTSTPs at a busy 4-thread pool: while it is stopped, another process can always
    write at once (before, 6 of 15 random stops held the lock and a plain enqueue waited 60 s
    and failed). The enqueue runs with a short busy timeout, so a held lock fails it."""
    rounds = 15
    with connect(rcli.db) as queue:
        queue.enqueue_many(["true"] * 20_000)
        pool = pools.start(4)
        pools.wait_registered()
        wait_for(lambda: queue.counts()[State.COMPLETED] > 200, what="a busy pool")
        rng = random.Random(7)
        for n in range(rounds):
            time.sleep(rng.uniform(0.005, 0.05))
            pool.send_signal(signal.SIGTSTP)
            wait_for(lambda: stopped(pool.pid), what="the pool to stop itself")
            # The job ids say which round wrote them; the busy timeout is the store's 60 s,
            # so a lock held by the stopped pool shows as a stalled, then failed, enqueue.
            rcli.run("enqueue", "--id", f"while-stopped-{n}", "true", timeout=30)
            pool.send_signal(signal.SIGCONT)
            wait_for(lambda: not stopped(pool.pid), what="the pool to continue")
        assert {j.id for j in queue.job_records(limit=100) if j.id.startswith("while-")} == {
            f"while-stopped-{n}" for n in range(rounds)
        }
        assert pools.terminate_all() == [0]
        figure(f"{rounds} Ctrl-Z of a busy pool, {rounds} enqueues while stopped, none waited")


def test_sighup_stops_a_foreground_pool_gracefully(rcli: Cli, pools: Pools, tmp_path: Path) -> None:
    """Closing the terminal of a foreground pool lets its running job finish and be recorded,
    instead of killing the pool (the job then stayed processing until its lease ran out)."""
    started = tmp_path / "started"
    rcli.run("enqueue", "--id", "long", f"touch {started}; sleep 1; echo done")
    pool = pools.start(1)
    wait_for(started.exists, what="the job to start")
    pool.send_signal(signal.SIGHUP)
    assert pool.wait(timeout=60) == 0
    job = rcli.json("show", "long")
    assert job["state"] == "completed"
    assert job["history"][-1]["stdout"] == "done\n"
    assert rcli.json("status")["workers"] == []
