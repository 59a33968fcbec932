"""End-to-end scenarios through the installed ``queuectl`` command and real pool processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from queuectl.api import connect
from tests.conftest import QUEUECTL, Cli, Gate, LogLines, PostgresInSoak, wait_for


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def state(cli: Cli, job_id: str) -> str:
    return str(cli.json("show", job_id)["state"])


def drain(cli: Cli, count: int = 2) -> None:
    cli.run("worker", "run", "--count", str(count), "--until-empty", timeout=120)


def test_a_job_completes_and_its_output_is_in_logs(cli: Cli) -> None:
    assert (
        cli.run("enqueue", '{"id":"job1","command":"echo hello; echo oops >&2"}').stdout == "job1\n"
    )
    drain(cli)
    assert state(cli, "job1") == "completed"
    logs = cli.run("logs", "job1")
    assert (logs.stdout, logs.stderr) == ("hello\n", "oops\n")
    assert cli.run("list", "--state", "completed").stdout.count("job1") == 1


def test_plain_command_string_gets_a_generated_id(cli: Cli) -> None:
    job_id = cli.run("enqueue", "echo hello").stdout.strip()
    assert len(job_id) == 10
    assert cli.json("show", job_id)["command"] == "echo hello"


@PostgresInSoak
def test_failing_job_backs_off_lands_in_dlq_and_comes_back(cli: Cli) -> None:
    cli.run("config", "set", "backoff_max", "300")  # the documented 2 s, then 4 s
    cli.run("enqueue", '{"id":"flaky","command":"exit 3","max_retries":2}')
    drain(cli, 1)
    job = cli.json("show", "flaky")
    assert (job["state"], job["attempts"], job["last_error"]) == ("dead", 3, "exit code 3")
    history = job["history"]
    assert [a["outcome"] for a in history] == ["failed"] * 3
    waits = [
        (ts(b["started_at"]) - ts(a["finished_at"])).total_seconds()
        for a, b in itertools.pairwise(history)
    ]
    assert waits[0] >= 2 and waits[1] >= 4
    assert [j["id"] for j in cli.json("dlq", "list")] == ["flaky"]

    assert "flaky: moved back to pending" in cli.run("dlq", "retry", "flaky").stdout
    job = cli.json("show", "flaky")
    assert (job["state"], job["attempts"], len(job["history"])) == ("pending", 0, 3)
    cli.run("dlq", "list")  # still works on an empty DLQ
    assert cli.json("dlq", "list") == []


def test_dlq_restore_is_an_alias_of_retry(cli: Cli) -> None:
    cli.run("enqueue", '{"id":"d","command":"false","max_retries":0}')
    drain(cli, 1)
    cli.run("dlq", "restore", "d")
    assert state(cli, "d") == "pending"


def test_many_workers_in_several_processes_run_each_job_once(cli: Cli, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ids = [f"j{i}" for i in range(300)]
    pools = [cli.popen("worker", "run", "--count", "4") for _ in range(3)]
    # All three pools are polling before the jobs arrive, so they race for every claim.
    wait_for(lambda: len(cli.json("status")["workers"]) == 3, what="three pools")
    with connect(cli.db) as queue:
        queue.submit({"id": i, "command": f"echo $QUEUECTL_JOB_ID >> {ledger}"} for i in ids)
        assert queue.wait(timeout=120)
        workers = {a.worker_id for a in queue.attempt_records()}
    for pool in pools:
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=30) == 0
    assert sorted(ledger.read_text().split()) == sorted(ids)  # every id exactly once
    assert cli.json("status")["counts"]["completed"] == len(ids)
    assert len(workers) >= 2  # the pools really shared the work


def test_missing_command_fails_cleanly_into_the_dlq(cli: Cli) -> None:
    cli.run("enqueue", '{"id":"nope","command":"no-such-command-xyz","max_retries":1}')
    drain(cli, 1)
    job = cli.json("show", "nope")
    assert job["state"] == "dead"
    assert [a["exit_code"] for a in job["history"]] == [127, 127]
    assert "not found" in job["history"][0]["stderr"]


def pool_with_log(cli: Cli, *args: str) -> tuple[subprocess.Popen[bytes], LogLines]:
    """A foreground pool whose log (its stderr) the test reads as it comes."""
    pool = cli.popen("worker", "run", *args, stderr=subprocess.PIPE)
    assert pool.stderr is not None
    return pool, LogLines(pool.stderr)


@PostgresInSoak
def test_jobs_survive_a_restart(cli: Cli, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    cli.run("enqueue", "--id", "busy", gate.command())
    cli.run("enqueue", "--id", "later", "--priority", "-1", "echo still here")
    pool, log = pool_with_log(cli, "--count", "1")
    gate.wait_started()
    # The pool's one thread is held by "busy": "later" is still waiting when the pool stops.
    assert (state(cli, "busy"), state(cli, "later")) == ("processing", "pending")
    pool.send_signal(signal.SIGTERM)
    log.wait_for("SIGTERM, stopping gracefully")
    gate.release()
    assert pool.wait(timeout=30) == 0
    log.close()
    assert (state(cli, "busy"), state(cli, "later")) == ("completed", "pending")
    assert cli.json("status")["workers"] == []

    cli.run("enqueue", "--id", "after", "--delay", "0s", "echo me too")
    drain(cli, 1)  # the restart: a new pool on the same queue
    assert state(cli, "later") == state(cli, "after") == "completed"
    assert cli.run("logs", "later").stdout == "still here\n"
    workers = {a["worker_id"] for j in ("busy", "later") for a in cli.json("show", j)["history"]}
    assert len(workers) == 2  # "later" ran in the second pool, not the first


def test_a_killed_worker_loses_its_job_to_another_pool(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cli.run("enqueue", "--id", "victim", f"echo x >> {marker}; sleep 3; echo done")
    first = cli.popen("worker", "run", start_new_session=True)
    wait_for(lambda: marker.exists(), what="job started")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = cli.popen("worker", "run")
    try:
        wait_for(lambda: state(cli, "victim") == "completed", timeout=60, what="recovery")
    finally:
        second.terminate()
        second.wait(timeout=30)
    history = cli.json("show", "victim")["history"]
    assert [a["outcome"] for a in history] == ["lost", "completed"]
    assert "stopped renewing its lease" in history[0]["error"]
    assert history[0]["worker_id"] != history[1]["worker_id"]


def test_timeout_kills_the_command_and_its_children(cli: Cli) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.125"
    cli.run(
        "enqueue",
        json.dumps(
            {
                "id": "slow",
                "command": f"sleep {marker} & sleep {marker}",
                "timeout": 0.5,
                "max_retries": 0,
            }
        ),
    )
    drain(cli, 1)
    job = cli.json("show", "slow")
    assert job["state"] == "dead"
    assert job["history"][0]["outcome"] == "timeout"
    assert job["last_error"] == "timed out after 0.5 s"
    found = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert found.stdout == ""


@pytest.mark.parametrize("how", ["sigterm", "stop-request", "stop-request-then-sigterm"])
def test_graceful_stop_lets_the_running_job_finish(cli: Cli, tmp_path: Path, how: str) -> None:
    gate = Gate(tmp_path)
    cli.run("enqueue", "--id", "long", gate.command("echo finished"))
    cli.run("enqueue", "--id", "queued", "--priority", "-1", "echo never started")
    pool, log = pool_with_log(cli, "--count", "1")
    gate.wait_started()
    stopper: subprocess.Popen[str] | None = None
    if how == "sigterm":
        pool.send_signal(signal.SIGTERM)
        log.wait_for("SIGTERM, stopping gracefully")
    elif how == "stop-request-then-sigterm":  # e.g. systemd stopping the unit afterwards
        cli.run("worker", "stop")
        assert cli.json("status")["workers"][0]["stopping"]
        log.wait_for("stop requested, stopping gracefully")
        pool.send_signal(signal.SIGTERM)
        log.wait_for("SIGTERM, stopping gracefully")
    else:
        stopper = subprocess.Popen(
            [QUEUECTL, "worker", "stop", "--wait"], env=cli.env, stdout=subprocess.PIPE, text=True
        )
        log.wait_for("stop requested, stopping gracefully")
        assert stopper.poll() is None  # still waiting for the pool
    # The stop has landed while the job still runs; only now may it finish.
    assert state(cli, "long") == "processing"
    assert pool.poll() is None
    gate.release()
    assert pool.wait(timeout=30) == 0
    log.close()
    if stopper is not None:
        out, _ = stopper.communicate(timeout=30)
        assert stopper.returncode == 0
        assert "Stopped 1 pool(s)" in out
    assert state(cli, "long") == "completed"
    assert cli.run("logs", "long").stdout == "finished\n"
    assert state(cli, "queued") == "pending"
    assert cli.json("status")["workers"] == []


def test_background_pool_starts_and_stops(cli: Cli) -> None:
    out = cli.run("worker", "start", "--count", "2").stdout
    assert "Started worker pool" in out
    (worker,) = cli.json("status")["workers"]
    assert worker["threads"] == 2
    cli.run("enqueue", "--id", "bg", "echo from the background")
    wait_for(lambda: state(cli, "bg") == "completed", what="background pool ran the job")
    cli.run("worker", "stop", "--wait", "--timeout", "30")
    assert cli.json("status")["workers"] == []
    logs = list((Path(cli.env["QUEUECTL_HOME"]) / "logs").glob("worker-*.log"))
    assert "job bg attempt 1: completed" in logs[0].read_text()


def test_json_output_is_json_only(cli: Cli) -> None:
    cli.run("enqueue", "--id", "j", "printf '\\377ok'")
    drain(cli, 1)
    payloads: dict[str, Any] = {
        name: cli.json(*name.split())
        for name in ("status", "list", "show j", "dlq list", "config get", "metrics", "logs j")
    }
    assert payloads["status"]["counts"]["completed"] == 1
    assert payloads["list"][0]["created_at"].endswith("Z")
    assert payloads["config get"]["max_retries"] == 3
    assert payloads["metrics"]["by_outcome"]["completed"] == 1
    stdout = payloads["logs j"]["stdout"]
    assert stdout.encode("utf-8", "surrogateescape") == b"\xffok"


def test_logs_give_back_the_raw_bytes(cli: Cli) -> None:
    cli.run("enqueue", "--id", "bin", "printf '\\377\\000ok'")
    drain(cli, 1)
    raw = subprocess.run([QUEUECTL, "logs", "bin"], env=cli.env, capture_output=True)
    assert raw.stdout == b"\xff\x00ok"


def test_background_pool_with_an_unwritable_log_folder(cli: Cli) -> None:
    home = Path(cli.env["QUEUECTL_HOME"])
    home.mkdir(exist_ok=True)
    (home / "logs").write_text("a file where the log folder should be")
    proc = cli.run("worker", "start", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot write the pool's log")


def test_spellings_users_of_other_queuectl_tools_type(cli: Cli, tmp_path: Path) -> None:
    cli.run("config", "set", "max-retries-default", "5")
    cli.run("config", "set", "job_timeout_ms", "1500")
    config = cli.json("config", "get")
    assert (config["max_retries"], config["job_timeout"]) == (5, 1.5)
    assert cli.run("config", "get", "poll-interval-ms").stdout == "poll_interval_ms = 20\n"
    cli.run("enqueue", '{"id":"later","command":"echo ok","run_after":"2000-01-01T00:00:00Z"}')
    job = cli.json("show", "later")
    assert (job["run_at"], job["max_retries"], job["timeout"]) == (
        "2000-01-01T00:00:00.000Z",
        5,
        1.5,
    )
    cli.run("worker", "run", "--poll-interval", "10", "--until-empty")
    assert state(cli, "later") == "completed"

    started = tmp_path / "started"
    cli.run("enqueue", "--id", "fg", f"touch {started}")
    pool = cli.popen("worker", "start", "--foreground", "--count", "2")
    wait_for(lambda: started.exists() and state(cli, "fg") == "completed", what="fg job")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
