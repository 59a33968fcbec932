"""Running one job: ``/bin/sh -c COMMAND`` in a process group of its own.

- Output: both streams are read as they come and only the last ``max_bytes`` of each are kept,
  so memory does not grow with what a job prints.
- Timeout or cancel: SIGTERM to the whole group, SIGKILL after ``KILL_GRACE`` seconds; both
  also go to every process of the shell's tree and the attempt's orphans, in the group or not.
- A job ends when its shell exits. Whatever it left running in its group is killed then, and
  so is what left the group (``queuectl.worker.escapes``), so no child or grandchild outlives
  the job, as far as the pool can find it.

The group leader is not reaped until its group has been signalled: its pid (the group id)
cannot be reused by another process while we may still send it signals. Groups are announced to
the pool's watchdog (``queuectl.worker.watchdog``), if it has one, which kills them should the
pool process die first.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping

from queuectl.model import Outcome, RunResult
from queuectl.worker.escapes import TRACKER, Attempt, Marker

KILL_GRACE = 2.0
#: how long to read leftover output once the shell has exited and its group was killed
DRAIN_SECONDS = 1.0
_CHUNK = 65536
#: the write end of the watchdog's pipe, or None (see ``announce_groups_to``)
_announce_fd: int | None = None


def announce_groups_to(fd: int | None) -> None:
    """Tell the watchdog listening on pipe ``fd`` about every job group (None: stop telling)."""
    global _announce_fd
    _announce_fd = fd


def announce_worker(worker_id: str) -> None:
    """Tell the watchdog a pool id, whose jobs' processes it kills too (by their marker)."""
    if "\n" not in worker_id:
        _write_announcement(b"W" + worker_id.encode())


def _announce(sign: bytes, pgid: int) -> None:
    _write_announcement(b"%s%d" % (sign, pgid))


def _write_announcement(line: bytes) -> None:
    fd = _announce_fd
    if fd is None:
        return
    # One short write, atomic on a pipe. If the watchdog is gone, jobs still end with the pool.
    with contextlib.suppress(OSError):
        os.write(fd, line + b"\n")


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]


def run_command(
    command: str,
    *,
    timeout: float = 0,
    max_bytes: int = 65536,
    cancel: threading.Event | None = None,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run ``command`` to its end and say how it went. Never raises for the command's faults.

    ``env`` is added to this process's environment; the attempt's marker in it (the
    ``QUEUECTL_*`` variables a pool sets) names the processes that leave the group.
    """

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )

    try:
        proc, attempt = TRACKER.start(Marker.from_env(env), spawn, lambda p: p.pid)
    except OSError as exc:
        return RunResult(Outcome.FAILED, None, f"could not start the job: {exc.strerror or exc}")
    _announce(b"+", proc.pid)
    ended = False
    try:
        result = _supervise(proc, attempt, timeout, max_bytes, cancel)
        ended = True
        return result
    finally:
        if not ended:  # an error (or KeyboardInterrupt) while the shell may still run
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                TRACKER.end(attempt, shell_exited=False)
            _announce(b"-", proc.pid)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        proc.wait()  # at once after a normal end: the shell has exited
        TRACKER.forget(proc.pid)


def _supervise(
    proc: subprocess.Popen[bytes],
    attempt: Attempt,
    timeout: float,
    max_bytes: int,
    cancel: threading.Event | None,
) -> RunResult:
    assert proc.stdout is not None and proc.stderr is not None
    tails = {proc.stdout.fileno(): _Tail(max_bytes), proc.stderr.fileno(): _Tail(max_bytes)}
    deadline = time.monotonic() + timeout if timeout > 0 else None
    stop_reason: Outcome | None = None
    kill_at: float | None = None
    drain_until: float | None = None
    with contextlib.ExitStack() as cleanup:
        exit_fd = os.pidfd_open(proc.pid)  # readable once the shell has exited (Linux >= 5.3)
        cleanup.callback(os.close, exit_fd)
        selector = cleanup.enter_context(selectors.DefaultSelector())
        for fd in (*tails, exit_fd):
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if stop_reason is None:
                if deadline is not None and now >= deadline:
                    stop_reason = Outcome.TIMEOUT
                elif cancel is not None and cancel.is_set():
                    stop_reason = Outcome.FAILED
                if stop_reason is not None:
                    TRACKER.signal(attempt, signal.SIGTERM)
                    kill_at = now + KILL_GRACE
            if kill_at is not None and now >= kill_at:
                TRACKER.signal(attempt, signal.SIGKILL)
                kill_at = None
            if drain_until is not None and now >= drain_until:
                break  # something out of reach (another user's, say) still holds the pipe
            pending = [kill_at, drain_until, deadline if stop_reason is None else None]
            wakeups = [max(t - now, 0.0) for t in pending if t is not None]
            if cancel is not None and stop_reason is None:
                wakeups.append(0.25)  # how often a cancel request is noticed
            for key, _ in selector.select(min(wakeups) if wakeups else None):
                fd = key.fd
                if fd == exit_fd:
                    selector.unregister(fd)
                    # The shell is gone: end what it left behind, then read what is left.
                    _signal_group(proc.pid, signal.SIGKILL)
                    TRACKER.end(attempt)
                    kill_at = None
                    drain_until = time.monotonic() + DRAIN_SECONDS
                    continue
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    tails[fd].add(chunk)
                else:
                    selector.unregister(fd)
    _announce(b"-", proc.pid)  # before the reap: the group id is still ours
    code = proc.wait()  # (forgotten by the tracker in run_command)
    stdout, stderr = (bytes(tail.data) for tail in tails.values())
    return RunResult(*_verdict(code, stop_reason, timeout), stdout=stdout, stderr=stderr)


def _verdict(
    code: int, stop_reason: Outcome | None, timeout: float
) -> tuple[Outcome, int | None, str | None]:
    if stop_reason is Outcome.TIMEOUT:
        return Outcome.TIMEOUT, code, f"timed out after {timeout:g} s"
    if stop_reason is Outcome.FAILED:
        return Outcome.FAILED, code, "killed: the worker was stopped"
    if code == 0:
        return Outcome.COMPLETED, 0, None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return Outcome.FAILED, code, f"killed by signal {name}"
    notes = {126: " (command not executable)", 127: " (command not found)"}
    return Outcome.FAILED, code, f"exit code {code}{notes.get(code, '')}"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
