"""Making a pool process we own a child subreaper, so that it adopts its jobs' orphans.

With ``PR_SET_CHILD_SUBREAPER`` (Linux >= 3.4) a process whose parent dies is handed to this
process instead of init: a job's daemons, ``setsid`` children and the like stay within reach and
``queuectl.worker.escapes`` kills them when their attempt ends. Only for processes that run
nothing but a pool (``queuectl worker run`` and ``worker start``): in a notebook's kernel the
orphans of the user's own programs would become zombies of the kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Iterator

from queuectl.worker.escapes import TRACKER

log = logging.getLogger("queuectl.worker")

PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper(on: bool = True) -> str | None:
    """Make this process a child subreaper (or no longer one); the reason if that failed."""
    if not sys.platform.startswith("linux"):
        return f"not available on {sys.platform}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
            return f"prctl: errno {ctypes.get_errno()}"
    except (OSError, AttributeError) as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def adopt_orphans() -> Iterator[bool]:
    """Within this block, this process adopts its jobs' orphans and kills each when its attempt
    ends; at its end, any orphan still there. Yields whether that works here; if it does not, a
    warning is logged and escaped processes are found by their marker only, as in a notebook's
    kernel (``queuectl.worker.escapes``)."""
    problem = set_child_subreaper()
    if problem is not None:
        log.warning(
            "this pool cannot adopt its jobs' orphans (%s): processes that leave their job's "
            "process group are found by their environment only, so one that also clears it "
            "(env -i) may outlive the job",
            problem,
        )
        yield False
        return
    TRACKER.adopting = True
    try:
        yield True
    finally:
        TRACKER.sweep()  # no attempt runs any more: every orphan left goes
        TRACKER.adopting = False
        set_child_subreaper(False)
