"""Who a worker pool is: the host it reports and its id; and whether it is still there."""

from __future__ import annotations

import os
from datetime import datetime

from queuectl.model import Config, WorkerInfo


def host_name() -> str:
    """The host a pool reports: ``QUEUECTL_HOSTNAME`` if set, else the machine's name.

    Set it where the machine's name says little (containers get a new one at every start).
    """
    return os.environ.get("QUEUECTL_HOSTNAME") or os.uname().nodename


def new_worker_id() -> str:
    """A pool id: host, pid and a short random tag (pids repeat across hosts and reboots)."""
    return f"{host_name()}:{os.getpid()}:{os.urandom(2).hex()}"


def pool_gone(pool: WorkerInfo, now: datetime, config: Config) -> bool:
    """Whether a registered pool is gone: silent for ``config.pool_gone_after`` seconds, or
    it ran on this host and its process no longer exists (it was killed without saying so)."""
    if (now - pool.heartbeat_at).total_seconds() > config.pool_gone_after:
        return True
    return pool.host == host_name() and not pid_alive(pool.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
