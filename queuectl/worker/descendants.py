"""Signalling and killing whole process trees without hitting a stranger.

A pid read from ``/proc`` may belong to another process by the time it is signalled: its
process may have ended and been reaped, and the pid reused. So each process is held through a
pidfd (``pidfd_open``), which names that very process, and is taken only after the pidfd is
open and its parent is confirmed: the parent is held (or stopped) so the child's pid cannot have
been recycled under it without the check noticing.

``kill_trees`` stops before it kills: a stopped process can neither fork a child that the
collection would miss nor exit and hand its children to some other parent. It collects again
until no new process turns up, then sends SIGKILL to all of them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterable

from queuectl.worker import procfs

#: rounds of collection before killing what was found, also if some process never stopped
MAX_ROUNDS = 50
#: pause between two rounds while a SIGSTOP has not yet taken effect, seconds
ROUND_PAUSE = 0.001
#: how long to wait for killed processes to be gone, seconds (one in an uninterruptible sleep,
#: such as a hung NFS read, dies only when that ends)
KILL_WAIT = 2.0


class Proc:
    """One process, held by a pidfd (or, when no pidfd can be opened, by pid)."""

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int, fd: int | None) -> None:
        self.pid = pid
        self.fd = fd

    def send(self, sig: signal.Signals) -> bool:
        """Send ``sig``; False if the process is gone or not ours to signal."""
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def hold(pid: int, check: Callable[[int], bool] | None = None) -> Proc | None:
    """A handle on ``pid`` if, once held, ``check(pid)`` confirms it is the one meant."""
    fd: int | None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError:  # out of descriptors: fall back to the pid, still checked below
        fd = None
    proc = Proc(pid, fd)
    if check is not None and not check(pid):
        proc.close()
        return None
    return proc


def hold_child(pid: int, parent: int) -> Proc | None:
    """A handle on ``pid`` if it is (still) a child of ``parent``."""
    return hold(pid, lambda p: (stat := procfs.read_stat(p)) is not None and stat.ppid == parent)


def signal_trees(roots: Iterable[Proc], sig: signal.Signals) -> int:
    """Send ``sig`` to ``roots`` and all their descendants, parents first; return how many.

    Takes ownership of ``roots`` (closes them). Processes keep running meanwhile (``sig`` may
    be a SIGTERM they handle), so one forked during the walk may be missed.
    """
    held: dict[int, Proc] = {}
    for proc in roots:
        if proc.pid in held:
            proc.close()
        else:
            held[proc.pid] = proc
    try:
        queue = list(held.values())
        for proc in queue:
            proc.send(sig)
            for child in procfs.children(proc.pid):
                if child not in held and (handle := hold_child(child, proc.pid)) is not None:
                    held[child] = handle
                    queue.append(handle)
        return len(held)
    finally:
        for proc in held.values():
            proc.close()


def kill_trees(find_roots: Callable[[], Iterable[Proc]], *, rescan: bool = True) -> dict[int, int]:
    """SIGKILL the processes ``find_roots()`` returns and all their descendants; once they are
    gone (or ``KILL_WAIT`` passed), return the pid and process group of each that was alive.

    Each is stopped first. ``find_roots`` is asked again each round when ``rescan`` (it is
    cheap), otherwise only once something collected has ended before it could be stopped (its
    children went to some other parent, where only ``find_roots`` can find them).
    """
    held: dict[int, Proc] = {}
    dead: set[int] = set()
    alive: dict[int, int] = {}  # pid: pgid
    try:
        ask = True
        for _ in range(MAX_ROUNDS):
            grew = False
            if ask:
                for proc in find_roots():
                    grew |= _take(held, proc)
            queue = list(held.values())
            for proc in queue:
                for child in procfs.children(proc.pid):
                    if child not in held and (handle := hold_child(child, proc.pid)):
                        grew |= _take(held, handle)
                        queue.append(handle)
            settled, newly_dead = _settled(held, dead, alive)
            if not grew and settled:
                break
            ask = rescan or newly_dead
            if not grew:
                time.sleep(ROUND_PAUSE)  # a SIGSTOP has not yet taken effect
        for proc in held.values():
            proc.send(signal.SIGKILL)
        wait_gone(list(held.values()), KILL_WAIT)
        return alive
    finally:
        for proc in held.values():
            proc.close()


def _take(held: dict[int, Proc], proc: Proc) -> bool:
    if proc.pid in held:
        proc.close()
        return False
    held[proc.pid] = proc
    proc.send(signal.SIGSTOP)
    return True


def _settled(held: dict[int, Proc], dead: set[int], alive: dict[int, int]) -> tuple[bool, bool]:
    """Whether every held process is stopped or dead; whether one died since last asked.
    Notes in ``alive`` the group of each seen alive."""
    settled, newly_dead = True, False
    for pid in held:
        if pid in dead:
            continue
        stat = procfs.read_stat(pid)
        if stat is None or stat.state in b"ZXx":
            dead.add(pid)
            newly_dead = True
            continue
        alive.setdefault(pid, stat.pgid)
        if stat.state not in procfs.SETTLED:
            settled = False
    return settled, newly_dead


def wait_gone(procs: list[Proc], timeout: float) -> None:
    """Wait until every process of ``procs`` has exited (a zombie counts as gone)."""
    poller = select.poll()
    pending = 0
    for proc in procs:
        if proc.fd is not None:
            poller.register(proc.fd, select.POLLIN)
            pending += 1
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for fd, _ in poller.poll(left * 1000):
            with contextlib.suppress(KeyError):
                poller.unregister(fd)
            pending -= 1
