"""Sweeps through the installed ``queuectl`` command, the API and real pools, on both stores:
the grid, quoting, params in the environment, the result channel, results while a sweep runs,
cancel and retry by group, and filters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from queuectl.api import connect
from queuectl.errors import InvalidInput
from queuectl.model import State
from tests.conftest import Cli, Gate, PostgresInSoak, wait_for
from tests.e2e.test_job_control import stop_pool


def results(cli: Cli, group: str) -> dict[str, dict[str, Any]]:
    """``results --json`` by job, keyed by the job's params (as text)."""
    rows = cli.json("results", "--group", group)
    return {row["id"]: row for row in rows}


def sweep(cli: Cli, *args: str) -> dict[str, Any]:
    """``queuectl sweep --json ARGS`` (the command comes last, after ``--``)."""
    return dict(json.loads(cli.run("sweep", "--json", *args).stdout))


def drain(cli: Cli) -> None:
    cli.run("worker", "run", "--until-empty", "--count", "2")


def test_a_grid_runs_every_combination_with_quoted_values(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = sweep(
        cli,
        "--param",
        "lr=0.001,0.01",
        "--param",
        f"name=plain,x; touch {marker}",
        "--group",
        "g",
        "--",
        "printf '%s|' {lr} {name} $QUEUECTL_PARAM_LR; echo",
    )
    assert out["group"] == "g" and len(out["ids"]) == 4
    drain(cli)
    assert not marker.exists()  # a value is one argument, never a second command
    printed = sorted(cli.run("logs", job_id).stdout for job_id in out["ids"])
    assert printed == sorted(
        [
            f"0.001|x; touch {marker}|0.001|\n",
            "0.001|plain|0.001|\n",
            f"0.01|x; touch {marker}|0.01|\n",
            "0.01|plain|0.01|\n",
        ]
    )
    job = cli.json("show", out["ids"][0])
    assert (job["group"], job["params"]) == ("g", {"lr": 0.001, "name": "plain"})
    # Words after -- stay words, whatever the values hold, in enqueue and sweep alike.
    cli.run(
        "enqueue",
        "--id",
        "w",
        "--param",
        f"v=a b; touch {marker}",
        "--",
        "printf",
        "<%s>",
        "{v}",
        "x {v} y",
    )
    words = sweep(cli, "--param", f"v=c d; touch {marker}", "--", "printf", "<%s>", "x {v} y")
    drain(cli)
    assert cli.run("logs", "w").stdout == f"<a b; touch {marker}><x a b; touch {marker} y>"
    assert cli.run("logs", words["ids"][0]).stdout == f"<x c d; touch {marker} y>"
    assert not marker.exists()
    # A plain enqueue never rewrites its command, braces and all.
    plain = cli.run("enqueue", "echo {lr} {{x}}").stdout.strip()
    assert cli.json("show", plain)["command"] == "echo {lr} {{x}}"


@PostgresInSoak
def test_the_result_channel_keeps_what_jobs_write(cli: Cli) -> None:
    cli.run("config", "set", "result_max_bytes", "100")
    write = 'printf %s "$R" > "$QUEUECTL_RESULT"'
    cases = {
        "valid": '{"loss": 0.5, "m": {"acc": 0.9}}',
        "nan": '{"loss": NaN}',
        "invalid": "{not json",
        "list": "[1, 2]",
        "big": '{"x": "' + "y" * 200 + '"}',
        "huge": '{"loss": 1e400}',
    }
    for name, content in cases.items():
        cli.run("enqueue", "--id", name, "--group", "r", "--env", f"R={content}", write)
    cli.run("enqueue", "--id", "missing", "--group", "r", "true")
    cli.run("enqueue", "--id", "folder", "--group", "r", 'mkdir "$QUEUECTL_RESULT"')
    cli.run(
        "enqueue",
        "--id",
        "failing",
        "--group",
        "r",
        "--max-retries",
        "0",
        "--env",
        'R={"partial": 1}',
        f"{write}; exit 3",
    )
    drain(cli)
    rows = results(cli, "r")
    assert {k: rows[k]["state"] for k in rows} == {
        **dict.fromkeys(cases, "completed"),
        "missing": "completed",
        "folder": "completed",
        "failing": "dead",
    }
    assert (rows["valid"]["loss"], rows["valid"]["m.acc"]) == (0.5, 0.9)
    assert rows["nan"]["loss"] is None and rows["huge"]["loss"] is None
    assert rows["failing"]["partial"] == 1  # a failed attempt's result is kept too
    for name in ("invalid", "list", "big", "missing"):
        assert rows[name]["loss"] is None
    errors = {name: cli.json("show", name)["history"][-1]["error"] for name in rows}
    assert errors["valid"] is None and errors["missing"] is None
    assert "is not valid JSON" in errors["invalid"]
    assert "must hold a JSON object" in errors["list"]
    assert "more than result_max_bytes (100 bytes)" in errors["big"]
    assert "is not a regular file" in errors["folder"]
    assert errors["failing"] == "exit code 3"


def test_cancel_and_retry_a_sweep_by_group_while_it_runs(cli: Cli, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    cli.run("enqueue", "--id", "other", "--group", "keep", gate.command())
    enqueued = sweep(
        cli,
        "--param",
        "n=0..5",
        "--group",
        "s",
        "--max-retries",
        "0",
        "--",
        'echo "{{\\"k\\": $QUEUECTL_PARAM_N}}" > "$QUEUECTL_RESULT"; [ {n} -lt 3 ] || sleep 300',
    )
    pool = cli.popen("worker", "run", "--count", "3", stderr=subprocess.DEVNULL)
    try:
        # Partial results while the sweep runs: the finished jobs have theirs, the rest none.
        wait_for(lambda: sum(r.get("k") is not None for r in results(cli, "s").values()) == 3)
        wait_for(lambda: cli.json("status", "--group", "s")["counts"]["processing"] == 2)
        status = cli.json("status")
        assert status["groups"]["s"]["completed"] == 3
        assert status["groups"]["keep"]["processing"] == 1
        listed = cli.json("list", "--group", "s", "--state", "completed")
        assert len(listed) == 3 and all(job["group"] == "s" for job in listed)
        # Cancel the group: its running and pending jobs end, the other group goes on.
        out = cli.run("cancel", "--group", "s").stdout
        assert out.count(": cancelled") == 3
        assert cli.json("show", "other")["state"] == "processing"
        assert cli.json("status", "--group", "s")["counts"] == {
            "blocked": 0,
            "pending": 0,
            "processing": 0,
            "failed": 0,
            "completed": 3,
            "dead": 0,
            "cancelled": 3,
        }
        # Rerun the group's failed (cancelled) jobs; two block again, and are cancelled again.
        cancelled = {
            job_id for job_id, row in results(cli, "s").items() if row["state"] == "cancelled"
        }
        retried = cli.json("retry", "--group", "s", "--failed")["retried"]
        assert sorted(retried) == sorted(cancelled) and len(cancelled) == 3
        wait_for(lambda: cli.json("status", "--group", "s")["counts"]["processing"] == 2)
        cli.run("cancel", "--group", "s")
        gate.release()
        cli.run("wait", "--group", "keep", "--timeout", "60")
    finally:
        stop_pool(pool)
    assert len(enqueued["ids"]) == 6
    assert cli.json("dlq", "list", "--group", "s") == []
    assert cli.run("wait", "--group", "keep").returncode == 0


def test_the_api_sweep_handle(queue_target: str, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    with connect(queue_target) as q:
        q.set_config("backoff_max", 0)
        result = (
            "s=$(( {a} + {b} )); "  # (inside quotes, a param is $QUEUECTL_PARAM_<NAME>)
            'echo "{{\\"sum\\": $s, \\"a\\": $QUEUECTL_PARAM_A}}" > "$QUEUECTL_RESULT"'
        )
        zipped = q.sweep(result, a=[1, 2, 3], b=range(10, 13), zipped=True, group="zip")
        rows = pd.DataFrame({"a": [5, 6], "b": [1, 1]})
        table = q.sweep(result, rows=rows, group="rows", tags=["t"], max_retries=0)
        assert (len(zipped), len(table), zipped.group) == (3, 2, "zip")
        assert repr(zipped) == "<Sweep 'zip': 3 jobs>"
        q.start_workers(2)
        assert zipped.wait(60) and table.wait(60)
        frame = zipped.results()
        assert list(frame.columns)[:2] == ["a", "b"]
        assert sorted(frame["sum"].tolist()) == [11, 13, 15]
        assert table.results()["sum"].tolist() == [6, 7]
        assert set(q.jobs(tag="t").index) == set(table.ids)
        assert zipped.status().counts[State.COMPLETED] == 3
        assert len(zipped.attempts()) == 3 and len(zipped.jobs()) == 3
        assert table.cancel() == {} and table.retry_failed() == []
        with pytest.raises(InvalidInput, match="not both"):
            q.sweep(result, rows=rows, a=[1])
        with pytest.raises(InvalidInput, match=r"placeholder \{c\}"):
            q.sweep("echo {c}", a=[1])
        assert len(q.jobs()) == 5  # refused sweeps enqueued nothing
        generated = q.sweep("true", x=[True, False])
        assert generated.group.startswith("sweep-")
        assert q.get(generated.ids[0]).params == {"x": True}
        assert q.wait(60)
        assert q.metrics(group="zip").attempts == 3
        axes = q.plot.timeline(group="zip")
        assert len(axes.patches) == 3  # one bar per attempt
        assert len(q.plot.runtimes(by="a", group="zip").get_xticklabels()) == 3


def test_cancelling_sweeps_while_pools_finish_their_jobs(queue_target: str) -> None:
    """Cancels of whole groups race with pools finishing and claiming jobs of those groups:
    no deadlock (PostgreSQL locks rows in one order), and every job ends cancelled or run."""
    with connect(queue_target) as q:
        q.start_workers(8)
        for n in range(12):
            sweep = q.sweep("true {i}", i=range(60), group=f"s{n}")
            sweep.cancel(wait=False)
        assert q.wait(120)
        counts = q.counts()
        assert counts[State.COMPLETED] + counts[State.CANCELLED] == 12 * 60
