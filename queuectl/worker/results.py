"""The result channel: each attempt may write a JSON object to the file ``$QUEUECTL_RESULT``
names; the pool reads it when the attempt ends and stores it with the attempt.

The files live in a folder of the pool's own (mode 0700, removed when the pool ends), one per
attempt, named by the attempt id: a command cannot read another's. A result travels to the
store with the attempt's finish, so it reaches users on any host.

A result that cannot be kept (bigger than ``result_max_bytes``, not JSON, not an object, not a
regular file) is recorded as the attempt's error; the attempt keeps the outcome its command
earned, since rerunning a long job for a malformed summary would cost more than it saves.
``NaN``, infinities (which Python writes into JSON by default) and numbers too big for a float
are kept as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from queuectl.model import Fence, RunResult


class ResultFiles:
    """The folder of one pool's result files."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._lock = threading.Lock()  # the pool's threads make the folder on first use

    def path(self, fence: Fence) -> str:
        """Where the attempt of ``fence`` may write its result (nothing there yet)."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="queuectl-results-"))
        path = self._folder / f"{fence.attempt_id}.json"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return str(path)

    def collect(self, fence: Fence, result: RunResult, limit: int) -> RunResult:
        """``result`` with the attempt's result file read into it (and the file removed)."""
        if self._folder is None:
            return result
        path = self._folder / f"{fence.attempt_id}.json"
        try:
            kept, problem = read_result(path, limit)
        except Exception as exc:  # whatever a job left there, the pool's thread goes on
            kept, problem = None, f"result not kept: $QUEUECTL_RESULT could not be read ({exc})"
        finally:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()
        if problem is None:
            return replace(result, result=kept)
        error = f"{result.error}; {problem}" if result.error else problem
        return replace(result, error=error)

    def close(self) -> None:
        """Remove the folder and whatever is left in it."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def read_result(path: Path, limit: int) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``path`` (``None`` if there is no file), or why it was not kept."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"result not kept: $QUEUECTL_RESULT could not be read ({exc.strerror})"
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a FIFO, a device
        os.close(fd)
        return None, "result not kept: $QUEUECTL_RESULT is not a regular file"
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        return None, (
            f"result not kept: $QUEUECTL_RESULT holds more than result_max_bytes ({limit} "
            "bytes); write a summary, or raise the limit (queuectl config set result_max_bytes N)"
        )
    if not data.strip():
        return None, None  # created, never written: no result, as without the file
    try:
        value = json.loads(data, parse_constant=_none, parse_float=_finite_or_none)
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")  # as stored
    except (UnicodeError, ValueError, RecursionError) as exc:
        return None, f"result not kept: $QUEUECTL_RESULT is not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, (
            f"result not kept: $QUEUECTL_RESULT must hold a JSON object such as "
            f'{{"loss": 0.1}}, not {type(value).__name__}'
        )
    return value, None


def _none(_: str) -> None:
    return None


def _finite_or_none(text: str) -> float | None:
    """A JSON number as a float; one too big for a float (``1e400``) as ``None``, like NaN."""
    value = float(text)
    return value if math.isfinite(value) else None
