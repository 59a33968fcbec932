"""The command layer: one click group whose commands return result objects.

Importing this package registers every command on ``cli``.
"""

from __future__ import annotations

from queuectl.commands import admin, control, dlq, jobs, migrate, monitor, sweeps, workers
from queuectl.commands.group import Session, accept_db_everywhere, cli
from queuectl.commands.results import Result

accept_db_everywhere(cli)

__all__ = [
    "Result",
    "Session",
    "admin",
    "cli",
    "control",
    "dlq",
    "jobs",
    "migrate",
    "monitor",
    "sweeps",
    "workers",
]
