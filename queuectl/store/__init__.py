"""The store layer: the ``Store`` port, its SQLite and PostgreSQL adapters, and where a queue
lives (``location``). This module only re-exports what the layers above use."""

from __future__ import annotations

from queuectl.store.base import Store
from queuectl.store.location import (
    check_location,
    open_store,
    queue_home,
    redact,
    resolve_location,
)

__all__ = ["Store", "check_location", "open_store", "queue_home", "redact", "resolve_location"]
