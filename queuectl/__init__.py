"""queuectl: a persistent background job queue for shell commands.

``import queuectl`` stays light: the CLI, pandas, IPython and ipywidgets load only where they
are used. ``%load_ext queuectl`` loads the notebook front end (``queuectl.magics``).
"""

from __future__ import annotations

from typing import Any

from queuectl.errors import (
    DuplicateJob,
    InvalidInput,
    InvalidTransition,
    MissingDependency,
    NotFound,
    NoWorkers,
    QueuectlError,
    QueuePaused,
    SchemaTooNew,
    StoreError,
    WaitTimeout,
)

#: the one place the version is written: pyproject.toml reads it from here
__version__ = "0.1.0"

from queuectl.api import Queue, connect
from queuectl.model import Attempt, Config, Job, JobChanges, Outcome, QueueStatus, State


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext queuectl``: register the ``%queuectl`` magic."""
    from queuectl import magics

    magics.load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext queuectl``: remove the magic; stop its panels and pools."""
    from queuectl import magics

    magics.unload(ipython)


__all__ = [
    "Attempt",
    "Config",
    "DuplicateJob",
    "InvalidInput",
    "InvalidTransition",
    "Job",
    "JobChanges",
    "MissingDependency",
    "NoWorkers",
    "NotFound",
    "Outcome",
    "Queue",
    "QueuePaused",
    "QueueStatus",
    "QueuectlError",
    "SchemaTooNew",
    "State",
    "StoreError",
    "WaitTimeout",
    "__version__",
    "connect",
    "load_ipython_extension",
    "unload_ipython_extension",
]
