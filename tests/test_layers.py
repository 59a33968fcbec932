"""The layers only point down: the import-linter contract in pyproject.toml holds, and breaks.

``make lint`` runs ``lint-imports`` too; this runs it under pytest as well, and proves on a
copy of the package that an upward import (at module level, inside a function, or under
``TYPE_CHECKING``) and a module given no layer each break the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contract, on the ``queuectl`` in ``package_parent``."""
    assert LINT_IMPORTS.exists(), "lint-imports is missing: pip install -e '.[dev]'"
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(CONFIG), "--no-cache"],
        cwd=package_parent,
        # First on the path: the copy, not the installed (editable) queuectl.
        env={**os.environ, "PYTHONPATH": str(package_parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the package; each test below copies it again and breaks it."""
    parent = tmp_path_factory.mktemp("pristine")
    shutil.copytree(
        ROOT / "queuectl", parent / "queuectl", ignore=shutil.ignore_patterns("__pycache__")
    )
    return parent


def test_the_copy_itself_keeps_the_contract(package_copy: Path) -> None:
    # Else the broken runs below would prove nothing: they must fail because of the change.
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert found_at(package_copy).startswith(str(package_copy))


def found_at(parent: Path) -> str:
    """Where a child process run as ``lint_imports`` runs finds ``queuectl``."""
    return subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('queuectl').origin)"],
        cwd=parent,
        env={**os.environ, "PYTHONPATH": str(parent)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


UPWARD = {
    "module level": "from queuectl.api import connect\n",
    "inside a function": "\ndef _upward() -> None:\n    from queuectl.worker import pool\n",
    "TYPE_CHECKING": (
        "from typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from queuectl.commands import cli\n"
    ),
}


@pytest.mark.parametrize("kind", UPWARD)
def test_an_upward_import_breaks_the_contract(
    package_copy: Path, tmp_path: Path, kind: str
) -> None:
    shutil.copytree(package_copy / "queuectl", tmp_path / "queuectl")
    with (tmp_path / "queuectl" / "model" / "policy.py").open("a") as module:
        module.write(UPWARD[kind])
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert "queuectl.model is not allowed to import" in result.stdout


def test_a_cycle_between_siblings_breaks_the_contract(package_copy: Path, tmp_path: Path) -> None:
    # text and errors share the bottom layer but must not know each other either.
    shutil.copytree(package_copy / "queuectl", tmp_path / "queuectl")
    with (tmp_path / "queuectl" / "errors.py").open("a") as module:
        module.write("\nfrom queuectl import text\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "queuectl.errors is not allowed to import queuectl.text" in result.stdout


def test_a_module_without_a_layer_breaks_the_contract(package_copy: Path, tmp_path: Path) -> None:
    shutil.copytree(package_copy / "queuectl", tmp_path / "queuectl")
    (tmp_path / "queuectl" / "helpers.py").write_text('"""Somewhere new."""\n')
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "queuectl.helpers" in result.stdout


def test_store_modules_do_not_import_the_store_package() -> None:
    # queuectl/store/__init__.py only re-exports for the layers above; the store's own modules
    # import each other directly, so that none of them depends on what the package re-exports.
    graph = grimp.build_graph("queuectl")
    importers = graph.find_modules_that_directly_import("queuectl.store")
    assert {m for m in importers if m.startswith("queuectl.store.")} == set()
