"""queuectl: a persistent background job queue for shell commands.

``import queuectl`` stays light: the CLI, pandas, IPython and ipywidgets load only where they
are used. ``%load_ext queuectl`` will load the notebook front end.
"""

from __future__ import annotations

import logging

from queuectl.errors import (
    DuplicateJob,
    InvalidInput,
    InvalidTransition,
    NotFound,
    QueuectlError,
    SchemaTooNew,
    StoreError,
)

__version__ = "0.1.0"

# A library does not configure logging; the worker command adds its own handler.
logging.getLogger("queuectl").addHandler(logging.NullHandler())

from queuectl.api import Queue, QueueStatus, connect  # noqa: E402
from queuectl.model import Attempt, Config, Job, Outcome, State  # noqa: E402

__all__ = [
    "Attempt",
    "Config",
    "DuplicateJob",
    "InvalidInput",
    "InvalidTransition",
    "Job",
    "NotFound",
    "Outcome",
    "Queue",
    "QueueStatus",
    "QueuectlError",
    "SchemaTooNew",
    "State",
    "StoreError",
    "__version__",
    "connect",
]
