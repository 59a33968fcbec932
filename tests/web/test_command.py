"""``queuectl dashboard`` as a command: listed in the help, a clear error without the web
extra, and refused (with the reason) in a notebook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from queuectl.magics import Notebook, run_line
from tests.conftest import QUEUECTL

#: makes the web extra's modules unimportable, as if it were not installed
BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"starlette", "uvicorn", "sse_starlette"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""


def test_the_dashboard_is_listed_in_the_help() -> None:
    shown = subprocess.run([QUEUECTL, "--help"], capture_output=True, text=True, check=True)
    assert "dashboard" in shown.stdout


def test_without_the_web_extra_it_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    proc = subprocess.run(
        [sys.executable, "-m", "queuectl", "--db", str(tmp_path / "q.db"), "dashboard"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'queuectl[web]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_in_a_notebook_it_says_to_use_a_terminal(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="start it in a terminal"):
        run_line(f"dashboard --db {tmp_path / 'q.db'}", Notebook())
