"""`import queuectl` and `queuectl --help` must stay light (measured in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = {"pandas", "numpy", "IPython", "ipywidgets", "psycopg", "ipykernel", "tqdm"}


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_import_queuectl_loads_nothing_heavy_not_even_click() -> None:
    modules = loaded_after("import queuectl")
    assert HEAVY.isdisjoint(modules), HEAVY & modules
    assert "click" not in modules


def test_cli_help_loads_nothing_heavy() -> None:
    modules = loaded_after(
        "from queuectl.cli import main\nmain(['--help'])\nmain(['list', '--help'])"
    )
    assert HEAVY.isdisjoint(modules), HEAVY & modules
    assert "click" in modules  # the measurement saw the CLI


def test_cli_enqueue_loads_only_what_it_needs(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    code = f"from queuectl.cli import main\nmain(['--db', {str(db)!r}, 'enqueue', 'true'])"
    modules = loaded_after(code)
    assert "queuectl.store.sqlite" in modules  # the measurement saw the enqueue
    unneeded = {"logging", "statistics", "difflib", "secrets", "random", "socket", "subprocess"}
    assert HEAVY.isdisjoint(modules) and unneeded.isdisjoint(modules), unneeded & modules
