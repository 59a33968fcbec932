"""``%queuectl`` in a real IPython shell: the CLI's click group, returning objects."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import queuectl
from queuectl.commands import cli
from queuectl.panel import QueuePanel
from tests.conftest import QUEUECTL, wait_for
from tests.notebook.conftest import queuectl_threads

Magic = Callable[[str], Any]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the CLI, as the words that name it."""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


def test_every_cli_command_is_reachable_from_the_magic(
    magic: Magic, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = list(command_paths(cli))
    assert {("enqueue",), ("worker", "start"), ("dlq", "retry"), ("config", "set")} <= set(paths)
    for path in paths:
        assert magic(" ".join([*path, "--help"])) is None
        out = capsys.readouterr().out
        assert f"Usage: %queuectl {' '.join(path)}" in out, path


def test_help_and_version_never_exit_the_kernel(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    for line in ("--help", "-h", "list --help", "-V", ""):
        result = shell.run_cell(f"%queuectl {line}")
        assert result.success, (line, result.error_in_exec)
        assert result.result is None
    out = capsys.readouterr().out
    assert "Usage: %queuectl [OPTIONS] COMMAND" in out
    assert queuectl.__version__ in out


def test_loading_twice_or_reloading_keeps_one_magic_and_the_queue(
    shell: InteractiveShell, magic: Magic, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("load_ext", "queuectl")
    assert "already loaded" in capsys.readouterr().out
    magic("worker start")
    shell.run_line_magic("reload_ext", "queuectl")
    names = [n for n in shell.magics_manager.registry if n == "QueuectlMagics"]
    assert names == ["QueuectlMagics"]
    assert "queuectl" in shell.magics_manager.magics["line"]
    wait_for(lambda: queuectl_threads() == [], what="the reload to stop the kernel's pool")
    magic("use")
    assert f"This notebook uses {db_path}." in capsys.readouterr().out


def test_use_help_explains_and_writes_nothing(
    magic: Magic,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert magic("use --help") is None
    assert "Usage: %queuectl use [PATH_OR_URL]" in capsys.readouterr().out
    assert not (tmp_path / "--help").exists()


def test_a_relative_queue_stays_put_after_a_chdir(
    shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shell.run_line_magic("queuectl", "use rel.db")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    shell.run_line_magic("queuectl", "enqueue --id here true")
    shell.run_line_magic("queuectl", "worker start")
    shell.run_line_magic("queuectl", "wait --timeout 30")
    shell.run_line_magic("queuectl", "worker stop --wait")
    assert not (tmp_path / "elsewhere" / "rel.db").exists()
    with queuectl.connect(str(tmp_path / "rel.db")) as q:
        assert q.get("here").state == "completed"


def test_the_line_reaches_the_shell_unexpanded(shell: InteractiveShell, magic: Magic) -> None:
    shell.user_ns.update(x=42, HOME="python-home")
    result = shell.run_cell('%queuectl enqueue --id lit "echo $HOME {x} $$PATH"')
    assert result.success
    detail = magic("show lit --json")
    assert detail["command"] == "echo $HOME {x} $$PATH"


def test_a_trailing_semicolon_silences_the_output(shell: InteractiveShell, magic: Magic) -> None:
    magic("enqueue true")
    assert isinstance(shell.run_cell("%queuectl list").result, pd.DataFrame)
    assert shell.run_cell("%queuectl list;").result is None
    assert shell.run_cell("%queuectl list ;").success


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("list --state bogus", "Invalid value for '--state'"),
        ("frobnicate", "No such command 'frobnicate'"),
        ("show nope", "no job with id 'nope'"),
        ("enqueue 'unbalanced", "No closing quotation"),
        ("enqueue '{\"command\": 1}'", "command"),
        ("enqueue true --priority high", "'high' is not a valid integer"),
        ("config set max_retries -1", "max_retries"),
        ("dlq retry", "give the ids of dead jobs"),
        ("use a b", "usage: %queuectl use"),
        ("use --db", "usage: %queuectl use"),
        ("use /no/such/folder/q.db", "/no/such/folder"),
        ("--db ftp://host/q list", "unknown queue URL scheme"),
        ("wait", "no worker pool"),
        ("show 'x\x1b]0;title\x07'", "no job with id 'x\\x1b]0;title\\x07'"),
        ("panel --interval nan", "not a finite number"),
    ],
)
def test_user_mistakes_are_usage_errors_and_change_nothing(
    shell: InteractiveShell,
    magic: Magic,
    db_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    message: str,
) -> None:
    magic("enqueue --id existing true")
    before = magic("list --json")
    capsys.readouterr()
    result = shell.run_cell(f"%queuectl {line}")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert magic("list --json") == before


def test_queries_return_objects(shell: InteractiveShell, magic: Magic) -> None:
    assert magic("enqueue --id ok true") == "ok"
    assert magic("enqueue --id bad 'exit 3' --max-retries 0") == "bad"
    magic("worker start --count 2")
    magic("wait --timeout 30")

    shell.run_cell("dead = %queuectl list --state dead")
    dead = shell.user_ns["dead"]
    assert isinstance(dead, pd.DataFrame)
    assert list(dead.index) == ["bad"]
    assert dead.loc["bad", "last_error"] == "exit code 3"

    assert magic("dlq list").index.tolist() == ["bad"]
    history = magic("show bad")
    assert history[["job_id", "attempt", "exit_code", "outcome"]].values.tolist() == [
        ["bad", 1, 3, "failed"]
    ]
    metrics = magic("metrics")
    assert metrics.loc[:, "attempts"].tolist() == [2]

    status = magic("status")
    assert isinstance(status, queuectl.QueueStatus)
    assert status.counts["completed"] == 1 and status.counts["dead"] == 1
    assert "completed" in str(status) and repr(status).startswith("QueueStatus(")

    assert magic("config get max-retries") == 3
    assert magic("config get")["lease_seconds"] == 30
    assert magic("status --json")["counts"]["dead"] == 1
    magic("worker stop --wait")


def test_logs_print_the_captured_output(magic: Magic, capsys: pytest.CaptureFixture[str]) -> None:
    magic("enqueue --id talk 'echo out; echo err >&2'")
    magic("worker start")
    magic("wait --timeout 30")
    magic("worker stop --wait")
    capsys.readouterr()
    assert magic("logs talk") is None
    captured = capsys.readouterr()
    assert captured.out.endswith("out\n") and captured.err == "err\n"


def test_worker_start_runs_threads_of_the_kernel_until_stopped(magic: Magic) -> None:
    magic("worker start --count 2")
    assert {"queuectl-worker-1", "queuectl-worker-2"} <= set(queuectl_threads())
    (pool,) = magic("status").workers
    assert pool.pid == os.getpid() and pool.threads == 2
    ids = [magic(f"enqueue 'echo {n}'") for n in range(6)]
    magic("wait --timeout 30")
    assert set(magic("list --state completed").index) == set(ids)
    magic("worker stop --wait --timeout 30")
    assert queuectl_threads() == []
    assert magic("status").workers == []


def test_worker_stop_also_stops_background_pools(
    magic: Magic, db_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "QUEUECTL_DB": str(db_path), "QUEUECTL_HOME": str(home)}
    subprocess.run([QUEUECTL, "worker", "start"], env=env, check=True, capture_output=True)
    magic("worker start")
    assert len(magic("status").workers) == 2
    magic("worker stop --wait --timeout 30")
    assert "Stopped 2 pool(s)." in capsys.readouterr().out
    assert magic("status").workers == []


def test_which_queue(
    shell: InteractiveShell,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(line: str) -> Any:
        return shell.run_line_magic("queuectl", line)

    env_db, used_db, flag_db = (tmp_path / f"{n}.db" for n in ("env", "used", "flag"))
    monkeypatch.setenv("QUEUECTL_DB", str(env_db))
    run("enqueue --id from-env true")
    run(f"use {used_db}")
    run("enqueue --id from-use true")
    run(f"--db {flag_db} enqueue --id from-flag true")
    run("use")
    assert f"This notebook uses {used_db}." in capsys.readouterr().out
    for path, job in ((env_db, "from-env"), (used_db, "from-use"), (flag_db, "from-flag")):
        with queuectl.connect(str(path)) as q:
            assert list(q.jobs().index) == [job]


def test_panel_once_prints_text(magic: Magic, capsys: pytest.CaptureFixture[str]) -> None:
    assert magic("panel --once") is None
    assert "Recent jobs" in capsys.readouterr().out


def test_panel_is_a_live_widget_stopped_at_unload(magic: Magic) -> None:
    panel = magic("panel --interval 0.1")
    assert isinstance(panel, QueuePanel)
    magic("enqueue --id p true")
    wait_for(lambda: "1/1" in panel.progress.description or "0/1" in panel.progress.description)
    assert panel.running
    # the shell fixture unloads the extension and checks that no queuectl thread is left
