"""Dependencies through the installed ``queuectl`` command, the API and real pools, on both
stores: a job runs after its parents, waits visibly while it cannot, is cancelled with the
reason when a parent fails, and runs after all once that parent is retried."""

from __future__ import annotations

import json
from pathlib import Path

from queuectl.api import connect
from queuectl.model import State
from tests.conftest import Cli


def drain(cli: Cli) -> None:
    cli.run("worker", "run", "--until-empty", "--count", "2")


def started(cli: Cli, job_id: str) -> str:
    return str(cli.json("show", job_id)["history"][-1]["started_at"])


def finished(cli: Cli, job_id: str) -> str:
    return str(cli.json("show", job_id)["history"][-1]["finished_at"])


def test_a_job_after_others_waits_then_runs_after_them(cli: Cli, tmp_path: Path) -> None:
    order = tmp_path / "order"
    for name in ("fetch", "clean"):
        cli.run("enqueue", "--id", name, "--", "sh", "-c", f"sleep 0.3; echo {name} >> {order}")
    cli.run("enqueue", "--id", "report", "--after", "fetch,clean", "--", f"echo report >> {order}")
    assert cli.json("status")["counts"]["blocked"] == 1
    shown = cli.json("show", "report")
    assert (shown["state"], shown["unmet"], shown["after_rule"]) == ("blocked", 2, "ok")
    assert shown["parents"] == [
        {"id": "fetch", "state": "pending"},
        {"id": "clean", "state": "pending"},
    ]
    assert cli.json("show", "fetch")["children"] == [{"id": "report", "state": "blocked"}]
    text = cli.run("show", "report").stdout
    assert "parents           fetch (pending), clean (pending)" in text
    assert [job["id"] for job in cli.json("list", "--state", "blocked")] == ["report"]
    drain(cli)
    assert order.read_text().splitlines()[-1] == "report"
    assert started(cli, "report") >= max(finished(cli, "fetch"), finished(cli, "clean"))


def test_a_failed_parent_cancels_and_its_retry_re_arms(cli: Cli) -> None:
    cli.run("enqueue", '{"id": "train", "command": "exit 3", "max_retries": 0}')
    cli.run("enqueue", "--id", "evaluate", "--after", "train", "echo evaluate")
    cli.run("enqueue", "--id", "plot", "--after", "evaluate", "echo plot")
    cli.run("enqueue", "--id", "notify", "--after", "train", "--after-any", "echo notify")
    drain(cli)
    states = {job["id"]: (job["state"], job["last_error"]) for job in cli.json("list")}
    assert states == {
        "train": ("dead", "exit code 3"),
        "evaluate": ("cancelled", "parent train is dead"),
        "plot": ("cancelled", "parent evaluate is cancelled"),
        "notify": ("completed", None),
    }
    refused = cli.run("retry", "plot", check=False)
    assert refused.returncode == 2
    assert "'plot' cannot run: parent evaluate is cancelled" in refused.stderr
    cli.run("dlq", "retry", "train")
    cli.run("edit", "train", "--command", "true")  # (no pool runs: it waits to be edited)
    assert cli.json("show", "evaluate")["state"] == "blocked"
    assert cli.json("show", "plot")["state"] == "blocked"
    drain(cli)
    assert {job["state"] for job in cli.json("list")} == {"completed"}


def test_bad_parents_are_refused_and_nothing_is_written(cli: Cli) -> None:
    cli.run("enqueue", "--id", "a", "true")
    before = cli.checksum()
    missing = cli.run("enqueue", "--after", "a,ghost", "true", check=False)
    assert missing.returncode == 1
    assert "no job with id 'ghost' to wait for" in missing.stderr
    assert "Traceback" not in missing.stderr
    empty = cli.run("enqueue", "--after-group", "none", "true", check=False)
    assert empty.returncode == 1 and "group 'none' has no jobs" in empty.stderr
    rule = cli.run("enqueue", "--after-any", "true", check=False)
    assert rule.returncode == 2 and "needs parents" in rule.stderr
    twice = cli.run("enqueue", "--after", "a", '{"command": "true", "after": ["a"]}', check=False)
    assert twice.returncode == 2 and "after is given both" in twice.stderr
    assert cli.checksum() == before


def test_a_sweep_then_an_aggregation_and_the_graph(cli: Cli) -> None:
    with connect(cli.db) as q:
        sweep = q.sweep("echo {n}", n=range(4), group="grid", then="echo aggregate")
        assert sweep.then is not None and len(sweep) == 4
        graph = q.graph("grid")
        assert list(graph.columns) == ["parent", "child", "parent_state", "child_state", "rule"]
        assert graph["parent"].tolist() == list(sweep.ids)
        assert set(graph["child"]) == {sweep.then}
        assert set(graph["child_state"].astype(str)) == {"blocked"}
        assert q.get(sweep.then).state is State.BLOCKED
        q.run_workers(2, until_empty=True)
        assert q.get(sweep.then).state is State.COMPLETED
        assert len(sweep.results()) == 4  # the grid's rows: the aggregation has no params
        jobs = q.jobs(group="grid")
        assert set(jobs["state"].astype(str)) == {"completed"}
    out = json.loads(
        cli.run(
            "sweep", "--param", "n=1,2", "--then", "echo done", "--json", "--", "echo {n}"
        ).stdout
    )
    assert out["then"] and len(out["ids"]) == 2
    assert cli.json("show", out["then"])["parents"] == [
        {"id": job_id, "state": "pending"} for job_id in out["ids"]
    ]
