"""Running one job: ``/bin/sh -c COMMAND`` in a process group of its own.

- Output: both streams are read as they come and only the last ``max_bytes`` of each are kept,
  so memory does not grow with what a job prints.
- Timeout or stop (a cancel request, a lost lease, a pool stopping now): SIGTERM to the whole
  group, SIGKILL after ``KILL_GRACE`` seconds; both also go to every process of the shell's
  tree and the attempt's orphans, in the group or not. The ``Stop`` says what the attempt's
  outcome then is.
- Live output: ``on_output`` receives the output so far at most every ``OUTPUT_EVERY``
  seconds, and only when it changed (a job shorter than that never causes a call).
- Directory: the job runs in ``cwd``; one that does not exist fails the attempt before
  anything is started ("could not start: ...").
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
from collections.abc import Callable, Mapping

from queuectl.model import Outcome, RunResult
from queuectl.model.policy import KILL_GRACE
from queuectl.worker.escapes import TRACKER, Attempt, Marker
from queuectl.worker.identity import host_name

#: seconds between two reports of a running job's output
OUTPUT_EVERY = 1.0
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
    """The last ``limit`` bytes of a stream, and how many it had in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]


class Stop:
    """A request to stop a running job, and the outcome its attempt then has.

    The first request wins: a job cancelled by a user and then caught by a pool stopping
    now stays cancelled.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._wake_fd: int | None = None
        self.outcome = Outcome.FAILED
        self.reason = "killed: the worker was stopped"

    def request(self, outcome: Outcome = Outcome.FAILED, reason: str | None = None) -> None:
        """Ask for the stop (from any thread); later requests change nothing."""
        with self._lock:
            if self._event.is_set():
                return
            self.outcome = outcome
            self.reason = reason or self.reason
            self._event.set()
            if self._wake_fd is not None:
                os.eventfd_write(self._wake_fd, 1)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wake_fd(self) -> int:
        """A descriptor that becomes readable when the stop is requested, so the runner's
        wait ends at once instead of at its next timeout. ``close`` gives it back."""
        with self._lock:
            if self._wake_fd is None:
                self._wake_fd = os.eventfd(1 if self._event.is_set() else 0, os.EFD_CLOEXEC)
            return self._wake_fd

    def close(self) -> None:
        with self._lock:
            if self._wake_fd is not None:
                os.close(self._wake_fd)
                self._wake_fd = None


#: what ``on_output`` receives: the output so far, as a (running) result
OutputReport = Callable[[RunResult], None]


def run_command(
    command: str,
    *,
    timeout: float = 0,
    max_bytes: int = 65536,
    cancel: Stop | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_output: OutputReport | None = None,
) -> RunResult:
    """Run ``command`` to its end and say how it went. Never raises for the command's faults.

    ``env`` is added to this process's environment; the attempt's marker in it (the
    ``QUEUECTL_*`` variables a pool sets) names the processes that leave the group. ``cwd``:
    the directory to run in (``None``: this process's).
    """
    if cwd is not None and not os.path.isdir(cwd):
        missing = "is not a directory" if os.path.exists(cwd) else "does not exist"
        return RunResult(
            Outcome.FAILED, None, f"could not start: the directory {cwd} {missing} on {host_name()}"
        )

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
        )

    try:
        proc, attempt = TRACKER.start(Marker.from_env(env), spawn, lambda p: p.pid)
    except OSError as exc:
        return RunResult(Outcome.FAILED, None, f"could not start: {exc.strerror or exc}")
    _announce(b"+", proc.pid)
    ended = False
    try:
        result = _supervise(proc, attempt, timeout, max_bytes, cancel, on_output)
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
    cancel: Stop | None,
    on_output: OutputReport | None,
) -> RunResult:
    assert proc.stdout is not None and proc.stderr is not None
    tails = {proc.stdout.fileno(): _Tail(max_bytes), proc.stderr.fileno(): _Tail(max_bytes)}
    deadline = time.monotonic() + timeout if timeout > 0 else None
    next_report = time.monotonic() + OUTPUT_EVERY if on_output else None
    reported = (0, 0)
    stop_reason: Outcome | None = None
    kill_at: float | None = None
    drain_until: float | None = None
    with contextlib.ExitStack() as cleanup:
        exit_fd = os.pidfd_open(proc.pid)  # readable once the shell has exited (Linux >= 5.3)
        cleanup.callback(os.close, exit_fd)
        selector = cleanup.enter_context(selectors.DefaultSelector())
        for fd in (*tails, exit_fd):
            selector.register(fd, selectors.EVENT_READ)
        stop_fd = None
        if cancel is not None:
            stop_fd = cancel.wake_fd()
            cleanup.callback(cancel.close)
            selector.register(stop_fd, selectors.EVENT_READ)
        while selector.get_map().keys() - {stop_fd}:  # until the output and the shell are done
            now = time.monotonic()
            if stop_reason is None and drain_until is None:  # (once the shell has exited, its
                # result stands: a stop asked for now comes too late to change it)
                if deadline is not None and now >= deadline:
                    stop_reason = Outcome.TIMEOUT
                elif cancel is not None and cancel.is_set():
                    stop_reason = cancel.outcome
                if stop_reason is not None:
                    TRACKER.signal(attempt, signal.SIGTERM)
                    kill_at = now + KILL_GRACE
            if kill_at is not None and now >= kill_at:
                TRACKER.signal(attempt, signal.SIGKILL)
                kill_at = None
            if drain_until is not None and now >= drain_until:
                break  # something out of reach (another user's, say) still holds the pipe
            if next_report is not None and now >= next_report and on_output is not None:
                next_report = now + OUTPUT_EVERY
                totals = tuple(tail.total for tail in tails.values())
                if totals != reported:
                    reported = (totals[0], totals[1])
                    on_output(_result(Outcome.FAILED, None, None, tails))
            pending = [
                kill_at,
                drain_until,
                deadline if stop_reason is None else None,
                next_report if drain_until is None else None,
            ]
            wakeups = [max(t - now, 0.0) for t in pending if t is not None]
            for key, _ in selector.select(min(wakeups) if wakeups else None):
                fd = key.fd
                if fd == stop_fd:
                    selector.unregister(fd)  # noticed at the top of the loop, once
                    continue
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
    return _result(*_verdict(code, stop_reason, timeout, cancel), tails)


def _result(
    outcome: Outcome, code: int | None, error: str | None, tails: dict[int, _Tail]
) -> RunResult:
    out, err = tails.values()
    return RunResult(outcome, code, error, bytes(out.data), bytes(err.data), out.total, err.total)


def _verdict(
    code: int, stop_reason: Outcome | None, timeout: float, stop: Stop | None
) -> tuple[Outcome, int | None, str | None]:
    if stop_reason is Outcome.TIMEOUT:
        return Outcome.TIMEOUT, code, f"timed out after {timeout:g} s"
    if stop_reason is not None and stop is not None:
        return stop.outcome, code, stop.reason
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
