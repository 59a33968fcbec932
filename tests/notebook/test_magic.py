"""``%queuectl`` in a real IPython shell: the CLI's click group, returning objects."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import click
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import queuectl
from queuectl import magics
from queuectl.commands import cli
from queuectl.model import State
from queuectl.panel import QueuePanel
from queuectl.terminal import START_WORKERS
from tests.conftest import QUEUECTL, Cli, wait_for
from tests.notebook.conftest import queuectl_threads

Magic = Callable[[str], Any]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the CLI, as the words that name it."""
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


# -- parity: every command gives the same result through the CLI and through the magic --------
#
# Each leaf command of the click group is listed in exactly one of these tables, with the lines
# that exercise it. A command added to the group and listed nowhere fails the test.

#: commands that only read: run through both on the same seeded queue, outputs compared
READS: dict[tuple[str, ...], list[str]] = {
    ("status",): ["status --json"],
    ("list",): ["list --json", "list --state dead --limit 1 --json"],
    ("show",): ["show bad --json", "show waiting --json"],
    ("dlq", "list"): ["dlq list --json"],
    ("config", "get"): ["config get --json", "config get max-retries --json"],
    ("metrics",): ["metrics --json"],
    ("logs",): ["logs ok --json", "logs bad --attempt 1 --json"],
    # A pending job and no pool: both refuse at once, with the same message.
    ("wait",): ["wait --no-progress --json"],
    # No --json: the text of one rendering (the live widget is the notebook's own view).
    ("panel",): ["panel --once"],
    ("results",): ["results --json", "results --group g --tag t --json"],
}

#: commands that change the queue: each sequence runs on two identical copies of the seeded
#: queue, one through the CLI and one through the magic; outputs and resulting queues compared
WRITES: dict[tuple[str, ...], list[str]] = {
    ("enqueue",): [
        "enqueue --id new --priority 3 --max-retries 1 --timeout 10s --json 'echo new'",
        "enqueue --json 'echo generated id'",
        # dependencies: blocked after a pending parent, released at once by finished ones
        "enqueue --id after --after waiting,ok --json 'echo after'",
        "enqueue --id any --after-group g --after-any --json 'echo any'",
        "enqueue --id ran --after ok --json 'echo ran'",
        "show after --json",
        "status --json",
    ],
    ("dlq", "retry"): ["dlq retry bad --json"],
    ("dlq", "restore"): ["dlq restore --all --json"],
    ("config", "set"): ["config set max_retries 5", "config set poll-interval-ms 50"],
    # The CLI starts a detached process, the magic threads of the kernel: same queue after.
    ("worker", "start"): [
        "worker start --count 2 --json",
        "wait --timeout 60 --no-progress --json",
        "worker stop --wait --timeout 60 --json",
    ],
    ("worker", "stop"): ["worker stop --json"],  # no pool: nothing asked, on both
    ("worker", "run"): ["worker run --until-empty"],
    ("migrate",): ["migrate --to {target} --json"],
    ("cancel",): ["cancel waiting --json", "cancel --all-pending --json"],
    ("retry",): ["retry ok bad --json"],
    ("edit",): ["edit waiting --priority 7 --delay 1h --json"],
    ("pause",): ["pause --json", "status --json"],
    ("resume",): ["resume --json", "pause", "resume --json", "pause"],
    ("prune",): ["prune --older-than 0s --state dead --dry-run --json", "prune --older-than 0s"],
    ("dlq", "move"): ["dlq move waiting --json"],
    ("sweep",): [
        # (the lines are formatted with the migration target: braces doubled)
        "sweep --param n=1..2 --param s=a,b --group s --tag t --json -- echo {{n}} {{s}}",
        "sweep --param n=1..2 --group s2 --then 'echo all done' --json -- echo {{n}}",
        "list --group s --json",
        "list --state blocked --json",
    ],
}

#: groups only name their sub-commands; bare, they print their help (checked with --help)
GROUPS = {("config",), ("dlq",), ("worker",)}
#: servers that run until stopped: the magic refuses them (tests/web/test_command.py)
SERVERS = {("dashboard",)}

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
#: values of the moment a command runs, not of the queue
MOMENT_KEYS = {"throughput_per_minute", "completed_last_minute", "pid", "duration"}


def seed(path: Path) -> set[str]:
    """A queue with a completed job (with output), a dead one and a pending one; returns the
    ids of the pools that ran them."""
    with queuectl.connect(str(path)) as q:
        q.set_config("backoff_max", 0)
        q.enqueue("echo out; echo err >&2", id="ok", priority=2)
        q.enqueue("exit 3", id="bad", max_retries=1, priority=1)
        q.run_workers(1, until_empty=True)
        q.enqueue("echo later", id="waiting", group="g", tags=["t"], params={"n": 1})
        pools = {a.worker_id for a in q.attempt_records()}
    assert not Path(f"{path}-wal").exists()  # closed: the file alone is the queue
    return pools


class Normaliser:
    """Replaces what legitimately differs between two runs of a command: times after the seed
    (``<now>``), pools and their pids started by the command, ids the queue generated, and
    the two runs' own queue paths."""

    def __init__(self, seeded_at: str, seed_pools: set[str], paths: dict[str, str]) -> None:
        self.seeded_at = seeded_at
        self.seed_pools = seed_pools
        self.paths = paths
        self.generated: dict[str, str] = {}

    def __call__(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if key in MOMENT_KEYS and value is not None:
            return f"<{key}>"
        if not isinstance(value, str):
            return value
        if key == "worker_id" or (key == "id" and value.count(":") == 2):
            return value if value in self.seed_pools else "<pool>"
        if value in self.generated:
            return self.generated[value]
        for path, name in self.paths.items():
            value = value.replace(path, name)
        return ISO_TIME.sub(lambda m: m[0] if m[0] <= self.seeded_at else "<now>", value)


def queue_content(path: Path) -> dict[str, Any]:
    """Everything a queue holds, read through the API: jobs with their attempts, config, pools."""
    with queuectl.connect(str(path)) as q:
        attempts = plain(q.attempt_records())
        jobs = [
            {**job, "history": [a for a in attempts if a["job_id"] == job["id"]]}
            for job in plain(q.job_records(limit=1000))
        ]
        return {
            "jobs": sorted(jobs, key=lambda j: (j["command"], j["id"])),
            "config": plain(q.config()),
            "workers": plain(q.workers()),
            "paused": q.paused,
        }


def plain(value: Any) -> Any:
    """Records as JSON-like values (times as the queue writes them)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def through_cli(cli: Cli, line: str) -> Any:
    """What the CLI gives for LINE: its JSON (or text), or its error message."""
    proc = cli.run(*shlex.split(line), check=False)
    if proc.returncode != 0:
        assert proc.stderr.startswith("Error: "), proc.stderr
        return ("error", proc.returncode, proc.stderr.removeprefix("Error: ").strip())
    if "--json" in line:
        assert proc.stderr == "", proc.stderr
        return json.loads(proc.stdout)
    return proc.stdout.strip()


def through_magic(shell: InteractiveShell, line: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """What ``%queuectl LINE`` gives: its JSON value (or printed text), or its error message."""
    capsys.readouterr()
    try:
        value = shell.run_line_magic("queuectl", line)
    except UsageError as exc:
        return ("error", 1, _as_cli_words(str(exc).strip()))
    printed = _as_cli_words(capsys.readouterr().out.strip())
    if "--json" in line:
        assert printed == ""  # the value is the result: nothing printed besides
        return value
    if isinstance(value, dict):  # `config set`: the keys set, which the CLI prints as text
        assert printed == ""
        return "\n".join(f"{k} = {v}" for k, v in value.items())
    assert value is None
    return printed


def _as_cli_words(text: str) -> str:
    """``text`` with the magic's way to start a pool spelled as the CLI's: each front end names
    its own (the hint where no pool runs), and only there may they differ."""
    return text.replace(magics.START_WORKERS, START_WORKERS)


def test_every_cli_command_is_reachable_from_the_magic(
    magic: Magic, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = list(command_paths(cli))
    covered = set(READS) | set(WRITES) | GROUPS | SERVERS
    assert set(paths) == covered, "commands not covered by the parity test (or gone)"
    assert not set(READS) & set(WRITES) and not (set(READS) | set(WRITES)) & GROUPS
    for path in paths:
        assert magic(" ".join([*path, "--help"])) is None
        out = capsys.readouterr().out
        assert f"Usage: %queuectl {' '.join(path)}" in out, path


def _exercises(path: tuple[str, ...], lines: list[str]) -> bool:
    return all(shlex.split(line)[: len(path)] == list(path) for line in lines[:1])


@pytest.mark.parametrize("path", sorted(READS), ids=" ".join)
def test_reading_commands_give_the_same_result_as_the_cli(
    shell: InteractiveShell,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: tuple[str, ...],
) -> None:
    queue = tmp_path / "seeded.db"
    pools = seed(queue)
    normal = Normaliser(now_iso(), pools, {str(queue): "<queue>"})
    cli_run = Cli(queue, tmp_path / "home")
    before = queue_content(queue)
    assert _exercises(path, READS[path])
    for line in READS[path]:
        by_cli = normal(through_cli(cli_run, line))
        by_magic = normal(through_magic(shell, f"--db {queue} {line}", capsys))
        assert by_magic == by_cli, line
        assert by_cli not in ("", [], {}), line  # the seed gives every command something
    assert queue_content(queue) == before  # and they changed nothing


@pytest.mark.parametrize("path", sorted(WRITES), ids=" ".join)
def test_changing_commands_leave_the_same_queue_as_the_cli(
    shell: InteractiveShell,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: tuple[str, ...],
) -> None:
    seeded = tmp_path / "seed.db"
    pools = seed(seeded)
    copies = {side: tmp_path / f"{side}.db" for side in ("cli", "magic")}
    targets = {side: tmp_path / f"{side}-target.db" for side in ("cli", "magic")}
    for copy in copies.values():
        shutil.copy2(seeded, copy)
    paths = {str(p): "<queue>" for p in copies.values()}
    paths |= {str(p): "<target>" for p in targets.values()}
    normal = Normaliser(now_iso(), pools, {**paths, str(tmp_path / "home"): "<home>"})
    cli_run = Cli(copies["cli"], tmp_path / "home")
    assert _exercises(path, WRITES[path])
    outputs: dict[str, list[Any]] = {"cli": [], "magic": []}
    for line in WRITES[path]:
        outputs["cli"].append(through_cli(cli_run, line.format(target=targets["cli"])))
        magic_line = f"--db {copies['magic']} {line.format(target=targets['magic'])}"
        outputs["magic"].append(through_magic(shell, magic_line, capsys))
    assert not any(isinstance(o, tuple) for o in outputs["cli"]), outputs["cli"]

    contents = {side: queue_content(copies[side]) for side in ("cli", "magic")}
    if path == ("migrate",):
        contents |= {f"{side} target": queue_content(targets[side]) for side in ("cli", "magic")}
    # ids the queue generated: the same job on both sides, named by its place among them (in
    # the order of their commands: the ids themselves are random)
    for side in ("cli", "magic"):
        fixed = {"ok", "bad", "waiting", "new"}
        new = [job for job in contents[side]["jobs"] if job["id"] not in fixed]
        ordered = sorted(new, key=lambda job: (job["command"], job["id"]))
        for n, job in enumerate(ordered):
            normal.generated[job["id"]] = f"<generated {n}>"
    by_cli, by_magic = normal(outputs["cli"]), normal(outputs["magic"])
    assert by_magic == by_cli
    assert normal(contents["magic"]) == normal(contents["cli"])
    if path == ("migrate",):
        assert normal(contents["magic target"]) == normal(contents["cli target"])
        assert contents["cli target"]["jobs"] == contents["cli"]["jobs"]
    assert normal(contents["cli"]) != normal(queue_content(seeded)) or (
        path == ("worker", "stop") or path == ("migrate",)
    ), "the command changed nothing: the comparison proves little"


def now_iso() -> str:
    """The current time as the queue writes it (ISO 8601 UTC, milliseconds)."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    assert status.counts[State.COMPLETED] == 1 and status.counts[State.DEAD] == 1
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
    assert "Jobs (running first, then the newest)" in capsys.readouterr().out


def test_panel_is_a_live_widget_stopped_at_unload(magic: Magic) -> None:
    panel = magic("panel --interval 0.1")
    assert isinstance(panel, QueuePanel)
    magic("enqueue --id p true")
    wait_for(lambda: "/1 finished" in panel.progress.value)
    assert panel.running
    # the shell fixture unloads the extension and checks that no queuectl thread is left


def test_db_after_the_sub_command_in_the_magic(
    magic: Magic, shell: InteractiveShell, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with queuectl.connect(str(other)) as q:
        q.enqueue("true", id="there")
    status = magic(f"status --db {other}")
    assert status.counts[queuectl.State.PENDING] == 1
    assert list(magic(f"list --db {other}").index) == ["there"]
    with pytest.raises(UsageError, match="--db names two queues"):
        magic(f"--db {tmp_path / 'a.db'} status --db {other}")
    assert not (tmp_path / "a.db").exists()
