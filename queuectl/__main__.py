"""``python -m queuectl``."""

from __future__ import annotations

from queuectl.cli import run

run()
