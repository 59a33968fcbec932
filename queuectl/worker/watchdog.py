"""Kill the jobs of a pool process that died without cleaning up (SIGKILL, OOM killer).

A pool kills a job's process group when the job ends, times out or is stopped. A pool that is
killed outright cannot, and the commands it was running would keep going while their attempts
are recovered as ``lost`` and run again elsewhere. So ``queuectl worker run`` starts this
watchdog: a small process in a session of its own that holds the read end of a pipe. The runner
writes ``+PGID`` when a job's group starts and ``-PGID`` once the group is done (before its
leader is reaped, so the id cannot have been reused). When the pipe reaches end-of-file, the
pool process is gone, however it ended; the watchdog sends SIGKILL to every group still listed
and exits. After a clean exit the list is empty and nothing is signalled.

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

from queuectl.worker import runner

log = logging.getLogger("queuectl.worker")

#: seconds the watchdog sleeps after reading, so that a busy pool's lines come in batches
READ_PAUSE = 0.05


@contextlib.contextmanager
def guard_job_groups() -> Iterator[None]:
    """Within this block, the process groups of jobs run here die with this process."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "queuectl.worker.watchdog"],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signals: it ends when the pipe does
        )
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


def main() -> None:
    """Read ``+PGID`` / ``-PGID`` lines from stdin; at end-of-file kill the groups left."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the pool's end ends the watchdog
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                if line.startswith(b"+") and int(line[1:]) > 1:
                    groups.add(int(line[1:]))
                elif line.startswith(b"-"):
                    groups.discard(int(line[1:]))
        # Waking for every line would cost a busy pool a context switch per job on a CPU its
        # jobs need; the lines wait in the pipe meanwhile (far less than its 64 KiB), and
        # end-of-file still comes only after all of them.
        time.sleep(READ_PAUSE)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
