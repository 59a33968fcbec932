"""Kill the jobs of a pool process that died without cleaning up (SIGKILL, OOM killer).

A pool kills a job's process group when the job ends, times out or is stopped. A pool that is
killed outright cannot, and the commands it was running would keep going while their attempts
are recovered as ``lost`` and run again elsewhere. So ``queuectl worker run`` starts this
watchdog: a small process in a session of its own that holds the read end of a pipe. The runner
writes ``+PGID`` when a job's group starts and ``-PGID`` once the group is done (before its
leader is reaped, so the id cannot have been reused). When the pipe reaches end-of-file, the
pool process is gone, however it ended; the watchdog sends SIGKILL to every group still listed
and exits. After a clean exit the list is empty and nothing is signalled.

Processes that left a job's group (``setsid``, daemons) are found by their marker instead: a
pool writes ``W<worker id>`` when it starts, and at end-of-file the watchdog also kills, with
their trees, all processes whose environment holds ``QUEUECTL_WORKER_ID=<that id>`` (the pool
that adopted them is gone, so they were handed to some other parent). One that cleared its
environment (``env -i``) is not found. After a clean exit the pool has killed them all already.

Why not ``PR_SET_PDEATHSIG`` on the job's shell: it fires when the *thread* that forked the
shell ends, not the process, and it is not inherited by the shell's children, so the job's
grandchildren would keep running anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from queuectl.worker import descendants, procfs, runner
from queuectl.worker.escapes import TRACKER

log = logging.getLogger("queuectl.worker")

#: seconds the watchdog sleeps after reading, so that a busy pool's lines come in batches
READ_PAUSE = 0.05


@contextlib.contextmanager
def guard_job_groups() -> Iterator[None]:
    """Within this block, the process groups of jobs run here die with this process."""
    read_end, write_end = os.pipe()

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "queuectl.worker.watchdog"],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signals: it ends when the pipe does
        )

    try:
        # Known to the tracker: a pool that adopts orphans must not take it for one.
        proc = TRACKER.keep(spawn, lambda p: p.pid)
    except OSError as exc:
        os.close(write_end)
        log.warning("no watchdog (%s): if this pool is killed, its jobs keep running", exc)
        yield
        return
    finally:
        os.close(read_end)
    runner.announce_groups_to(write_end)
    try:
        yield
    finally:
        runner.announce_groups_to(None)
        os.close(write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
            TRACKER.forget(proc.pid)


def main() -> None:
    """Read ``+PGID`` / ``-PGID`` / ``W<id>`` lines from stdin; at end-of-file kill the groups
    left and the processes marked with the pools' ids."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the pool's end ends the watchdog
    groups: set[int] = set()
    worker_ids: set[bytes] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                if line.startswith(b"+") and int(line[1:]) > 1:
                    groups.add(int(line[1:]))
                elif line.startswith(b"-"):
                    groups.discard(int(line[1:]))
                elif line.startswith(b"W"):
                    worker_ids.add(line[1:])
        # Waking for every line would cost a busy pool a context switch per job on a CPU its
        # jobs need; the lines wait in the pipe meanwhile (far less than its 64 KiB), and
        # end-of-file still comes only after all of them.
        time.sleep(READ_PAUSE)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for worker_id in worker_ids:
        kill_marked((b"QUEUECTL_WORKER_ID=" + worker_id,))


def kill_marked(entries: tuple[bytes, ...]) -> None:
    """Kill every process whose environment holds ``entries``, with its tree."""

    def carries(pid: int) -> bool:
        environ = procfs.read_environ(pid)
        return environ is not None and procfs.has_entries(environ, entries)

    def roots() -> list[descendants.Proc]:
        found = [descendants.hold(pid, carries) for pid in procfs.pids_with_environ(entries)]
        return [proc for proc in found if proc is not None]

    descendants.kill_trees(roots, rescan=False)


if __name__ == "__main__":
    main()
