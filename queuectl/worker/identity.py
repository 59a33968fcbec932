"""Who a worker pool is: the host it reports and its id."""

from __future__ import annotations

import os


def host_name() -> str:
    """The host a pool reports: ``QUEUECTL_HOSTNAME`` if set, else the machine's name.

    Set it where the machine's name says little (containers get a new one at every start).
    """
    return os.environ.get("QUEUECTL_HOSTNAME") or os.uname().nodename


def new_worker_id() -> str:
    """A pool id: host, pid and a short random tag (pids repeat across hosts and reboots)."""
    return f"{host_name()}:{os.getpid()}:{os.urandom(2).hex()}"
