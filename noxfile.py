"""The test suite on every Python the package supports (``requires-python >= 3.11``).

``make test-pythons`` (``nox -s tests``) runs the whole suite once per interpreter, each in a
virtualenv of its own under ``.nox/`` with the dev extras; arguments after ``--`` go to pytest.
``make test-newest`` (``nox -s fast``) runs CI's fast subset on the newest supported Python
that is installed. An interpreter that is not installed is skipped, and nox says so:
"Session tests-3.13 skipped: Python interpreter 3.13 not found".

Interpreters are looked up as ``python3.X`` on PATH, then in pyenv's versions folder (pyenv's
shims answer only for the versions that pyenv has made active).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

#: every Python that requires-python admits and the classifiers name, oldest first
PYTHONS = ["3.11", "3.12", "3.13"]

#: CI's fast subset: the store contract and the units, the bad-input checks (whose messages
#: come from the interpreter) and the end-to-end scenarios, all on SQLite
FAST = [
    "tests/unit",
    "tests/store",
    "tests/reliability/test_bad_input.py",
    "tests/e2e/test_scenarios.py",
    "-m",
    "not postgres and not soak",
]

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False  # skip them, also under CI=true


def _works(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0
    except OSError:
        return False


def _find(version: str) -> str | None:
    """A working interpreter of ``version``: on PATH, else pyenv's newest build of it."""
    on_path = shutil.which(f"python{version}")
    if on_path and _works(on_path):
        return on_path
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    builds = sorted(
        root.glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda p: [int(n) for n in p.parent.parent.name.split(".") if n.isdigit()],
    )
    return str(builds[-1]) if builds and _works(str(builds[-1])) else None


_FOUND = {version: _find(version) for version in PYTHONS}
# nox looks interpreters up on PATH by name: put the folders of those found elsewhere first.
os.environ["PATH"] = os.pathsep.join(
    [*(str(Path(p).parent) for p in _FOUND.values() if p), os.environ.get("PATH", "")]
)
NEWEST = next((v for v in reversed(PYTHONS) if _FOUND[v]), PYTHONS[-1])


def _install(session: nox.Session) -> None:
    session.install("--quiet", "-e", ".[dev]")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite (or the pytest arguments after --) on this Python."""
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=[NEWEST])
def fast(session: nox.Session) -> None:
    """CI's fast subset on the newest supported Python that is installed."""
    _install(session)
    session.run("python", "-m", "pytest", *(session.posargs or FAST))
