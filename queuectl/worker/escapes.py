"""Finding the processes a job left behind outside its process group, and killing them.

A job's shell runs in a group of its own, and the runner kills that group. A process that left
the group (``setsid``, GNU ``timeout``, a daemon) is found here instead, in one of two ways:

- **Adopting** (``queuectl worker run`` / ``worker start``, see ``queuectl.worker.subreaper``):
  the pool process is a child subreaper, so every orphan of a job's processes becomes a child
  of the pool. At the end of each attempt the pool's children are listed; those that are not a
  job's shell (or the watchdog) are adopted orphans, and each is attributed by the
  marker in its environment (``QUEUECTL_JOB_ID``, ``QUEUECTL_ATTEMPT``, ``QUEUECTL_WORKER_ID``)
  or, if that was cleared (``env -i``), by its start time: it may belong to any attempt that was
  running when it started, so it is killed once none of those still runs. Their whole trees are
  killed, and the dead orphans reaped. Cost: one read of the main thread's children (where
  the kernel puts orphans), whatever the number of threads.
- **Scanning** (pools that run as threads of a process they do not own: a notebook's kernel, a
  script calling ``start_workers``): such a process also runs its user's programs, whose
  orphans must not become its zombies, so it is not made a subreaper. At the end of an attempt
  every process whose environment holds that attempt's marker is killed, with its tree. Only
  processes created since the attempt started can hold it: their pids follow the last one
  handed out at its start (``procfs.pids_since``). Cost: a listing of ``/proc`` and a read of
  ``/proc/PID/environ`` per process created on the machine meanwhile (all of them after the
  pid allocator may have gone full circle). A process that cleared its environment and left
  the job's tree is not found.

On timeout or cancel, the shell's whole tree and the attempt's marked orphans get the SIGTERM
and the SIGKILL too, not only its group.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from queuectl.worker import descendants, procfs
from queuectl.worker.descendants import Proc

log = logging.getLogger("queuectl.worker")
P = TypeVar("P")

MARKER_KEYS = ("QUEUECTL_JOB_ID", "QUEUECTL_ATTEMPT", "QUEUECTL_WORKER_ID")
#: clock ticks of doubt about which attempts ran when a process started (the kernel rounds
#: start times down to a tick)
START_SLACK = 2


@dataclass(frozen=True)
class Marker:
    """The environment values that name one attempt of one pool."""

    job_id: str
    attempt: str
    worker_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None) -> Marker | None:
        if env is None or any(key not in env for key in MARKER_KEYS):
            return None
        return cls(*(env[key] for key in MARKER_KEYS))

    @classmethod
    def parse(cls, environ: bytes) -> Marker | None:
        """The marker in a process's environment (``/proc/PID/environ``), if it has one."""
        if b"QUEUECTL_WORKER_ID=" not in environ:
            return None
        values = {}
        for entry in environ.split(b"\0"):
            name, _, value = entry.partition(b"=")
            values[name.decode(errors="replace")] = value.decode(errors="replace")
        return cls.from_env(values)

    def entries(self) -> tuple[bytes, ...]:
        values = (self.job_id, self.attempt, self.worker_id)
        # The worker id last: it is the same for all of a pool's jobs, the job id rules out more.
        return tuple(f"{k}={v}".encode() for k, v in zip(MARKER_KEYS, values, strict=True))


@dataclass(eq=False)
class Attempt:
    """One run of a command: its marker (None for a command run outside a pool) and when its
    shell was started, in boot-clock ticks."""

    marker: Marker | None
    started: float
    shell: int = 0
    #: where pid allocation stood at its start (scanning mode: only later pids can carry it)
    pids: procfs.PidMark | None = None
    serial: int = field(default_factory=itertools.count().__next__)


class Tracker:
    """The job shells of this process, the attempts that run, and the sweeps after them."""

    def __init__(self) -> None:
        #: guards the registries; held across starting a child and registering it when a
        #: sweep could list that child, so that a listed child is never a shell not yet known
        self._spawn_lock = threading.Lock()
        #: one sweep at a time: an adopted orphan is only reaped, so its pid only freed, by one
        self._sweep_lock = threading.Lock()
        self._known: Counter[int] = Counter()  # shells not yet reaped, the watchdog
        self._running: dict[int, Attempt] = {}
        self._worker_ids: set[str] = set()
        #: True while this process is a child subreaper (set by ``queuectl.worker.subreaper``)
        self.adopting = False

    # -- what the runner calls ---------------------------------------------------------------

    def start(
        self, marker: Marker | None, spawn: Callable[[], P], pid_of: Callable[[P], int]
    ) -> tuple[P, Attempt]:
        """Start a job's shell with ``spawn()`` and register it as a running attempt."""
        # Running from before the fork: whatever the shell starts, starts after it.
        attempt = Attempt(marker, procfs.boot_ticks())
        if marker is not None and not self.adopting:
            attempt.pids = procfs.pid_mark()
        with self._spawn_lock:
            self._running[attempt.serial] = attempt
            if marker is not None:
                self._worker_ids.add(marker.worker_id)
        try:
            shell = self.keep(spawn, pid_of)
        except BaseException:
            with self._spawn_lock:
                del self._running[attempt.serial]
            raise
        attempt.shell = pid_of(shell)
        return shell, attempt

    def keep(self, spawn: Callable[[], P], pid_of: Callable[[P], int]) -> P:
        """Start a child (a shell, the watchdog) that sweeps must neither kill nor reap."""
        if not self._sweeps_see_my_children():
            child = spawn()
            with self._spawn_lock:
                self._known[pid_of(child)] += 1
            return child
        # Known before a sweep can list it. Only here: holding the lock across a fork would
        # make the pool's threads start their shells one at a time.
        with self._spawn_lock:
            child = spawn()
            self._known[pid_of(child)] += 1
        return child

    def forget(self, pid: int) -> None:
        """``pid`` (a shell or helper of ours) has been reaped."""
        with self._spawn_lock:
            self._known[pid] -= 1
            if self._known[pid] <= 0:
                del self._known[pid]

    def signal(self, attempt: Attempt, sig: signal.Signals) -> None:
        """Send ``sig`` to an attempt's group, its shell's tree and its marked orphans."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(attempt.shell, sig)
        with self._sweep_lock if self.adopting else contextlib.nullcontext():
            roots = [proc for proc in [descendants.hold(attempt.shell)] if proc is not None]
            roots += self._marked(attempt)
            descendants.signal_trees(roots, sig)

    def end(self, attempt: Attempt, shell_exited: bool = True) -> None:
        """The attempt's shell has ended and its group was killed: kill what it left behind.

        The shell is not reaped yet, so its pid is still its own. Once it has exited it has no
        children (they went to this process or elsewhere); if an error ended the supervision
        while it still ran (``shell_exited`` false), its tree is killed too.
        """
        with self._spawn_lock:
            self._running.pop(attempt.serial, None)
        shell = None if shell_exited else attempt.shell
        killed = self.sweep(also=shell) if self.adopting else self._kill_marked(attempt, shell)
        escaped = [pid for pid, pgid in killed.items() if pgid != attempt.shell]
        if escaped:
            log.info(
                "%s: killed %d process(es) it left outside its process group",
                _name(attempt),
                len(escaped),
            )

    # -- sweeps -----------------------------------------------------------------------------

    def sweep(self, also: int | None = None) -> dict[int, int]:
        """Kill every adopted orphan that no running attempt may own, with its tree (and the
        tree of ``also``, a registered shell), then reap the dead orphans.

        Returns the pid and process group of each process that was still alive.
        """
        me = os.getpid()
        with self._sweep_lock:
            orphans: list[int] | None = self._orphans()
            if not orphans and also is None:
                return {}  # the common case: one read, nothing to do
            decided: set[int] = set()

            def roots() -> list[Proc]:
                nonlocal orphans
                found: list[Proc | None] = []
                if also is not None and also not in decided:
                    decided.add(also)
                    found.append(descendants.hold(also))
                for pid in self._orphans() if orphans is None else orphans:
                    if pid not in decided:
                        decided.add(pid)
                        if self._unowned(pid):
                            found.append(descendants.hold_child(pid, me))
                orphans = None  # listed again next round: some may have been adopted since
                return [proc for proc in found if proc is not None]

            killed = descendants.kill_trees(roots)
            self._reap_orphans()
        killed.pop(also or 0, None)
        return killed

    def _kill_marked(self, attempt: Attempt, shell: int | None) -> dict[int, int]:
        """Scanning mode: kill every process carrying the attempt's marker (and the tree of
        ``shell``)."""
        first = True

        def roots() -> list[Proc]:
            nonlocal first
            found = [descendants.hold(shell)] if first and shell is not None else []
            first = False
            return [proc for proc in found if proc is not None] + self._marked(attempt)

        killed = descendants.kill_trees(roots, rescan=False)
        killed.pop(shell or 0, None)
        return killed

    def _marked(self, attempt: Attempt) -> list[Proc]:
        """Processes carrying the attempt's marker: this process's orphans when adopting, else
        any process started since the attempt began."""
        if attempt.marker is None:
            return []
        entries = attempt.marker.entries()

        def carries(pid: int) -> bool:
            environ = procfs.read_environ(pid)
            return environ is not None and procfs.has_entries(environ, entries)

        if self.adopting:
            me = os.getpid()
            found = [descendants.hold_child(pid, me) for pid in self._orphans() if carries(pid)]
        else:
            # Checked again once held: the pid may have been reused since the scan.
            recent = procfs.pids_since(attempt.pids)
            marked = procfs.pids_with_environ(entries, recent)
            found = [descendants.hold(pid, carries) for pid in marked]
        return [proc for proc in found if proc is not None]

    def _sweeps_see_my_children(self) -> bool:
        """Whether a sweep may list the children of the calling thread: those of the main
        thread, where adopted orphans are listed too (see ``procfs.adopted_children``)."""
        return self.adopting and (
            not procfs.HAS_CHILDREN_FILE or threading.get_native_id() == os.getpid()
        )

    def _orphans(self) -> list[int]:
        """This process's children that are not shells or helpers: adopted orphans."""
        with self._spawn_lock:
            return [pid for pid in procfs.adopted_children() if pid not in self._known]

    def _unowned(self, pid: int) -> bool:
        """Whether no running attempt may own the adopted orphan ``pid``."""
        environ = procfs.read_environ(pid)
        marker = None if environ is None else Marker.parse(environ)
        with self._spawn_lock:
            running = list(self._running.values())
            ours = marker is not None and marker.worker_id in self._worker_ids
        if ours:
            return all(attempt.marker != marker for attempt in running)
        stat = procfs.read_stat(pid)
        if stat is None:
            return False  # gone
        # Without our marker it may belong to any attempt that was running when it started,
        # and one that still runs started before it.
        return all(stat.start_ticks + START_SLACK < attempt.started for attempt in running)

    def reap(self) -> None:
        """Reap the adopted orphans that have ended since the last sweep (a backstop, called
        now and then: one that ends while another attempt runs is only reaped by a sweep)."""
        if self.adopting and self._sweep_lock.acquire(blocking=False):  # a sweep reaps too
            try:
                self._reap_orphans()
            finally:
                self._sweep_lock.release()

    def _reap_orphans(self) -> None:
        # Never a known child: that would take the exit status its Popen waits for.
        me = os.getpid()
        exiting: list[Proc] = []
        for pid in self._orphans():
            stat = procfs.read_stat(pid)
            if stat is not None and stat.state not in b"ZXx" and stat.exiting:
                # Its memory may be gone already, and with it the marker a sweep reads: it
                # would become a zombie nobody reaps. Its exit is under way, so wait for it.
                if (proc := descendants.hold_child(pid, me)) is not None:
                    exiting.append(proc)
            elif stat is not None and stat.state in b"ZXx":
                self._reap(pid)
        try:
            descendants.wait_gone(exiting, descendants.KILL_WAIT)
        finally:
            for proc in exiting:
                self._reap(proc.pid)
                proc.close()

    @staticmethod
    def _reap(pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _name(attempt: Attempt) -> str:
    if attempt.marker is None:
        return f"command (shell pid {attempt.shell})"
    return f"job {attempt.marker.job_id} attempt {attempt.marker.attempt}"


#: the tracker of this process
TRACKER = Tracker()
