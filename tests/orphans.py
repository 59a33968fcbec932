"""Folders left by test sessions that died without cleaning up (killed, say, by a CI timeout):
each server the tests start (PostgreSQL, JupyterLab) lives in a temporary folder that names
its session's process in ``OWNER_FILE``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: the pid of the test process that made a server's folder
OWNER_FILE = "owner"


def claim(folder: Path) -> None:
    """Mark ``folder`` as this test process's."""
    (folder / OWNER_FILE).write_text(str(os.getpid()))


def orphaned(prefix: str) -> list[Path]:
    """The temporary folders named ``prefix*`` whose session is gone. Those of live sessions,
    and folders without a readable owner (not ours to judge), are left out."""
    found = []
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            os.kill(int((folder / OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            found.append(folder)
        except (OSError, ValueError):
            pass
    return found
