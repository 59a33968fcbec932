"""The Python API: ``queuectl.connect(...)`` returns a ``Queue``.

The CLI and the notebook magic are both built on this class; it holds no SQL and no rendering.
"""

from __future__ import annotations

from queuectl.api.queue import Queue, connect, generate_id
from queuectl.api.sweep import Sweep
from queuectl.model.status import QueueStatus as QueueStatus  # re-exported: its old home

__all__ = ["Queue", "QueueStatus", "Sweep", "connect", "generate_id"]
