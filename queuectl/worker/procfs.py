"""Reading processes from ``/proc`` (Linux): parents, children, states, start times, environs.

Every reader returns None or an empty list for a process that is gone or not ours to read: a
process may end between any two reads, and callers treat that as "nothing to do".
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

#: clock ticks per second, the unit of a process's start time in ``/proc/PID/stat``
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: states of a process that will not run again: stopped, traced, zombie, dead
SETTLED = frozenset(b"tTZXx")
#: whether the kernel lists a thread's children (CONFIG_PROC_CHILDREN); else ppid scans
#: the flag of a task whose exit has begun (``flags``, field 9 of ``/proc/PID/stat``)
_PF_EXITING = 0x4
HAS_CHILDREN_FILE = Path(f"/proc/self/task/{os.getpid()}/children").exists()


class Stat(NamedTuple):
    """The fields of ``/proc/PID/stat`` used here."""

    state: int  # one byte, such as ord("S"), ord("T"), ord("Z")
    ppid: int
    pgid: int
    start_ticks: int  # clock ticks after boot
    exiting: bool  # its exit has begun (PF_EXITING): it will be a zombie soon, whatever it does


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


#: pids go from 300 (after the first round) to this, then start again
PID_MAX = _pid_max()


def boot_ticks() -> float:
    """Now, in the clock and unit of a process's start time (``CLOCK_BOOTTIME`` ticks)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK


def _read(path: str) -> bytes:
    """A whole small file, with the fewest system calls (this runs at every attempt end)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if len(data) < 65536:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_stat(pid: int) -> Stat | None:
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data.rpartition(b")")[2].split()
    try:
        exiting = bool(int(fields[6]) & _PF_EXITING)
        return Stat(fields[0][0], int(fields[1]), int(fields[2]), int(fields[19]), exiting)
    except (IndexError, ValueError):
        return None


def read_environ(pid: int) -> bytes | None:
    """The environment ``pid`` was started with (not later changes); None if unreadable."""
    try:
        return _read(f"/proc/{pid}/environ")
    except OSError:  # gone, or another user's (EACCES)
        return None


def has_entries(environ: bytes, entries: tuple[bytes, ...]) -> bool:
    """Whether every ``NAME=value`` of ``entries`` is a whole entry of ``environ``."""
    if not entries or entries[0] not in environ:  # the cheap test rules out most processes
        return False
    padded = b"\0" + environ if environ.endswith(b"\0") else b"\0" + environ + b"\0"
    return all(b"\0" + entry + b"\0" in padded for entry in entries)


def pids() -> list[int]:
    """Every process id visible here."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


class PidMark(NamedTuple):
    """Where the kernel's pid allocation stood at one moment."""

    forks: int  # tasks created since boot (``processes`` in /proc/stat)
    last_pid: int  # the last pid handed out
    tasks: int  # tasks alive


def pid_mark() -> PidMark | None:
    try:
        loadavg = _read("/proc/loadavg").split()  # b"0.00 0.01 0.05 1/123 4567"
        stat = _read("/proc/stat")
        forks = int(stat.partition(b"\nprocesses ")[2].split(b"\n", 1)[0])
        return PidMark(forks, int(loadavg[4]), int(loadavg[3].partition(b"/")[2]))
    except (OSError, ValueError, IndexError):
        return None


def pids_since(mark: PidMark | None) -> list[int]:
    """The live processes created after ``mark`` was taken (and maybe some older ones).

    Pids are handed out in cyclic order, so those are the pids after ``mark.last_pid`` up to
    the last one now, unless the allocator went full circle meanwhile. It cannot have if fewer
    than a round of pids were allocated or skipped as taken: skipped ones were alive at the
    mark or allocated since, so ``2 * forks since + tasks at the mark`` bounds the distance.
    If it could have (or nothing can be read), every process.
    """
    now = pid_mark()
    every = pids()
    if mark is None or now is None or 2 * (now.forks - mark.forks) + mark.tasks + 300 >= PID_MAX:
        return every
    low, high = mark.last_pid, now.last_pid
    if low <= high:
        return [pid for pid in every if low < pid <= high]
    return [pid for pid in every if pid > low or pid <= high]  # wrapped once


def pids_with_environ(entries: tuple[bytes, ...], among: list[int] | None = None) -> list[int]:
    """Every process (of ours to read) started with all of ``entries`` in its environment,
    among ``among`` (default: all).

    One read of ``/proc/PID/environ`` for each process looked at.
    """
    me = os.getpid()
    found = []
    for pid in pids() if among is None else among:
        environ = read_environ(pid) if pid != me else None
        if environ is not None and has_entries(environ, entries):
            found.append(pid)
    return found


def children(pid: int) -> list[int]:
    """The children of process ``pid``: those of each of its threads."""
    if not HAS_CHILDREN_FILE:
        return [child for child, stat in _all_stats().items() if stat.ppid == pid]
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    # A child is listed under the thread that forked it, or that adopted it as an orphan.
    for tid in tasks:
        try:
            found.extend(int(child) for child in _read(f"/proc/{pid}/task/{tid}/children").split())
        except OSError:
            continue  # the thread ended meanwhile
    return found


def adopted_children() -> list[int]:
    """The children of this process's main thread: among them, every orphan it adopted.

    An orphan goes to the subreaper's first live thread (``find_alive_thread``, Linux >= 3.19),
    the main thread while it runs; the other threads' lists hold only what they forked
    themselves (a pool's shells). So one read, whatever the number of threads.
    """
    me = os.getpid()
    if not HAS_CHILDREN_FILE:
        return children(me)
    try:
        return [int(child) for child in _read(f"/proc/{me}/task/{me}/children").split()]
    except OSError:
        return children(me)


def _all_stats() -> dict[int, Stat]:
    stats = {}
    for pid in pids():
        if (stat := read_stat(pid)) is not None:
            stats[pid] = stat
    return stats
