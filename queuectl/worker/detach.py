"""Starting a worker pool as a detached background process (``queuectl worker start``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from queuectl.errors import QueuectlError, StoreError
from queuectl.model import WorkerInfo
from queuectl.store.file_safety import create_private, private_folder

START_TIMEOUT = 20.0


def start_pool(
    db: str, count: int, log_dir: Path, workers: Callable[[], list[WorkerInfo]]
) -> WorkerInfo:
    """Spawn ``queuectl worker run`` for the queue ``db`` in a new session; return once its
    pool has registered, as ``workers`` (the queue's registered pools) shows.

    The pool's output goes to a log file in ``log_dir``. The queue location travels in the
    environment, not on the command line, so a password in a URL never shows in ``ps``.
    Jobs run in the current working directory.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    log_path = log_dir / f"worker-{stamp}.log"
    try:
        private_folder(log_dir, "the log folder")
    except StoreError as exc:
        raise StoreError(f"cannot write the pool's log in {log_dir}: {exc.message}") from None
    try:
        log_fd = create_private(log_path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        raise StoreError(f"cannot write the pool's log {log_path}: {exc.strerror}.") from None
    with open(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "queuectl", "worker", "run", "--count", str(count)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "QUEUECTL_DB": db},
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            for worker in workers():
                if worker.pid == proc.pid:
                    return worker
        except QueuectlError:
            pass  # the pool may be creating the schema right now
        if proc.poll() is not None:
            raise StoreError(
                f"the worker pool exited at start (code {proc.returncode}):\n"
                f"{_tail(log_path)}\n(full log: {log_path})"
            )
        time.sleep(0.05)
    proc.terminate()
    raise StoreError(f"the worker pool did not start within {START_TIMEOUT:g} s; see {log_path}.")


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(the log cannot be read: {exc.strerror})"
    return "\n".join(text[-lines:])
