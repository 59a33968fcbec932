"""`import queuectl` and the CLI must stay light (measured in a fresh interpreter).

These tests check which modules get imported, by name, never how long it takes: a module on this
list that shows up means a top-level import crept onto a path that does not need it. Import it
inside the function that uses it instead (as the code does for logging, difflib, pandas, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {
    "pandas",
    "numpy",
    "IPython",
    "ipywidgets",
    "psycopg",
    "ipykernel",
    "tqdm",
    "matplotlib",
}

#: The web extra: only `queuectl dashboard` imports it (queuectl.web.command stays light).
WEB = {"starlette", "uvicorn", "jinja2", "sse_starlette", "prometheus_client", "queuectl.web.app"}

#: What a one-shot command such as `queuectl enqueue` or `queuectl status` never needs: worker
#: pools, the watchdog, the notebook front end, PostgreSQL, migration, and the standard library
#: modules only those use.
NOT_FOR_ONE_SHOT_COMMANDS = {
    "logging",
    "statistics",
    "difflib",
    "secrets",
    "random",
    "socket",
    "subprocess",
    "signal",
    "selectors",
    "html",
    "string",
    "inotify_simple",
    "queuectl.frames",
    "queuectl.magics",
    "queuectl.migrate",
    "queuectl.model.policy",
    "queuectl.panel",
    "queuectl.progress",
    "queuectl.store.pg_listen",
    "queuectl.store.pg_schema",
    "queuectl.store.pg_statements",
    "queuectl.store.postgres",
    "queuectl.store.sqlite_watch",
    "queuectl.worker.detach",
    "queuectl.worker.lifecycle",
    "queuectl.worker.pool",
    "queuectl.worker.runner",
    "queuectl.worker.wakeup",
    "queuectl.worker.watchdog",
}


def loaded_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_import_queuectl_loads_nothing_heavy_not_even_click() -> None:
    modules = loaded_after("import queuectl")
    assert HEAVY.isdisjoint(modules), HEAVY & modules
    assert WEB.isdisjoint(modules), WEB & modules
    assert "click" not in modules


def test_import_queuectl_plots_loads_no_matplotlib() -> None:
    modules = loaded_after("import queuectl.plots")
    assert "queuectl.plots" in modules  # the measurement saw the module
    assert HEAVY.isdisjoint(modules), HEAVY & modules


def test_cli_help_loads_nothing_heavy() -> None:
    modules = loaded_after(
        "from queuectl.cli import main\nmain(['--help'])\nmain(['list', '--help'])\n"
        "main(['dashboard', '--help'])"
    )
    assert HEAVY.isdisjoint(modules), HEAVY & modules
    assert WEB.isdisjoint(modules), WEB & modules
    assert "click" in modules  # the measurement saw the CLI
    assert "queuectl.web.command" in modules


@pytest.mark.parametrize("args", [["enqueue", "true"], ["status"]], ids=" ".join)
def test_one_shot_commands_load_only_what_they_need(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "queue.db"
    code = f"from queuectl.cli import main\nassert main(['--db', {str(db)!r}, *{args!r}]) == 0"
    # Only what the command added: site hooks of the environment may import anything.
    modules = loaded_after(code) - loaded_after("pass")
    assert "queuectl.store.sqlite" in modules  # the measurement saw the command run
    assert HEAVY.isdisjoint(modules), HEAVY & modules
    assert NOT_FOR_ONE_SHOT_COMMANDS.isdisjoint(modules), NOT_FOR_ONE_SHOT_COMMANDS & modules
    assert WEB.isdisjoint(modules), WEB & modules
