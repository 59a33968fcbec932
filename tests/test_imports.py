"""`import queuectl` and `queuectl --help` must stay light (measured in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

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
