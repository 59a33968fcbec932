"""A real IPython shell with the extension loaded, and a queue file per test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import queuectl
from tests.conftest import wait_for


def queuectl_threads() -> list[str]:
    """Names of the threads queuectl started that are still alive."""
    return [t.name for t in threading.enumerate() if t.name.startswith("queuectl-")]


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """IPython's shell with ``%load_ext queuectl`` done; unloaded (and checked) afterwards."""
    monkeypatch.setenv("QUEUECTL_HOME", str(tmp_path / "home"))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "queuectl")
    yield ip
    ip.run_line_magic("unload_ext", "queuectl")
    assert "queuectl" not in ip.magics_manager.magics["line"]
    # Unloading returns at once; with no job running, the threads end right after.
    wait_for(lambda: queuectl_threads() == [], timeout=10, what="threads to end after unload")
    from queuectl import magics

    magics.NOTEBOOK.default = None  # the next test starts as a fresh kernel would


@pytest.fixture
def magic(shell: InteractiveShell, db_path: Path) -> Callable[[str], Any]:
    """Run ``%queuectl LINE`` against this test's queue file (set with ``use``)."""
    shell.run_line_magic("queuectl", f"use {db_path}")
    return lambda line: shell.run_line_magic("queuectl", line)


@pytest.fixture
def queue(db_path: Path) -> Iterator[queuectl.Queue]:
    q = queuectl.connect(str(db_path))
    yield q
    q.close()
    assert queuectl_threads() == []
