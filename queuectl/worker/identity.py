"""Who a worker pool is: the host it reports and its id."""

from __future__ import annotations

import os
import secrets
import socket


def host_name() -> str:
    """The host a pool reports: ``QUEUECTL_HOSTNAME`` if set, else the machine's name.

    Set it where the machine's name says little (containers get a new one at every start).
    """
    return os.environ.get("QUEUECTL_HOSTNAME") or socket.gethostname()


def new_worker_id() -> str:
    """A pool id: host, pid and a short random tag (pids repeat across hosts and reboots)."""
    return f"{host_name()}:{os.getpid()}:{secrets.token_hex(2)}"
