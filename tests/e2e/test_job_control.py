"""Job control through the installed ``queuectl`` command and real pool processes, on both
stores: where a job runs, cancel, retry, pause, edit, prune and following output."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from queuectl.api import connect
from queuectl.errors import InvalidTransition
from queuectl.model import Directory, Job, State
from tests.conftest import QUEUECTL, Cli, Gate, PostgresInSoak, group_alive, wait_for

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def show(cli: Cli, job_id: str) -> dict:  # type: ignore[type-arg]
    return dict(cli.json("show", job_id))


def stop_pool(proc: subprocess.Popen[bytes]) -> None:
    """Stop a pool gracefully; if a job of a failed test still blocks it, stop it now."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@contextlib.contextmanager
def running_pool(cli: Cli, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A foreground pool of two threads in its own process, started in another directory."""
    elsewhere = tmp_path / "pool-dir"
    elsewhere.mkdir()
    proc = cli.popen("worker", "run", "--count", "2", cwd=elsewhere, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: cli.json("status")["workers"], what="the pool to register")
        yield proc
    finally:
        stop_pool(proc)


@pytest.fixture
def pool(cli: Cli, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with running_pool(cli, tmp_path) as proc:
        yield proc


def test_a_job_runs_where_it_was_enqueued_with_its_variables(
    cli: Cli, pool: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    here = tmp_path / "project"
    (here / "sub").mkdir(parents=True)
    script = 'echo "$PWD $LR $QUEUECTL_JOB_ID"'
    cli.run("enqueue", "--id", "a", "--env", "LR=lr-0.1", script, cwd=here)
    cli.run("enqueue", "--id", "b", "--cwd", "sub", "--", "pwd", cwd=here)
    cli.run("wait", "--timeout", "60")
    assert cli.run("logs", "a").stdout == f"{here} lr-0.1 a\n"
    assert cli.run("logs", "b").stdout == f"{here / 'sub'}\n"
    job = show(cli, "a")
    assert (job["enqueued_from"], job["cwd"], job["env"]) == (str(here), None, {"LR": "lr-0.1"})
    # The variables stay out of listings (they may hold a token), text and JSON. (A value
    # that no timestamp of the listing can hold.)
    assert "lr-0.1" not in cli.run("list").stdout
    assert all("env" not in listed for listed in cli.json("list"))


def test_a_missing_directory_fails_the_attempt_clearly_and_is_retried(
    cli: Cli, pool: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    cli.run("enqueue", "--id", "nodir", "--max-retries", "1", "--cwd", str(gone), "true")
    wait_for(lambda: show(cli, "nodir")["state"] == "dead", what="the job to use its retries")
    job = show(cli, "nodir")
    assert [a["outcome"] for a in job["history"]] == ["failed", "failed"]
    assert job["last_error"].startswith(f"could not start: the directory {gone} does not exist")


def test_cancel_stops_a_running_job_and_nothing_else(
    cli: Cli, pool: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    gate = Gate(tmp_path)
    cli.run("enqueue", "--id", "other", gate.command())
    cli.run("enqueue", "--id", "long", "--max-retries", "3", "--", "sleep 300 & sleep 300")
    wait_for(lambda: show(cli, "long")["state"] == "processing" and gate.started.exists())
    pgid = int(
        wait_for(
            lambda: subprocess.run(
                ["pgrep", "-o", "-f", "sleep 300 & sleep 300"], capture_output=True, text=True
            ).stdout.strip()
        )
    )
    done = cli.run("cancel", "long")
    assert done.stdout == "long: cancelled\n"
    assert not group_alive(pgid)
    job = show(cli, "long")
    assert (job["state"], job["attempts"]) == ("cancelled", 1)
    assert [(a["outcome"], a["error"]) for a in job["history"]] == [
        ("cancelled", "cancelled by request")
    ]
    # The pool and its other job go on.
    assert pool.poll() is None and show(cli, "other")["state"] == "processing"
    gate.release()
    cli.run("wait", "--timeout", "60")
    assert show(cli, "other")["state"] == "completed"
    time.sleep(1.5)  # a cancelled job is not retried, even after its backoff
    assert show(cli, "long")["attempts"] == 1
    # ... until asked to run again.
    assert cli.run("retry", "long").stdout == "long: moved back to pending\n"
    assert show(cli, "long")["state"] in ("pending", "processing")
    cli.run("cancel", "long")


@PostgresInSoak
def test_cancel_during_the_backoff_wait_and_its_errors(cli: Cli, tmp_path: Path) -> None:
    cli.run("config", "set", "backoff_max", "3600")
    cli.run("config", "set", "backoff_base", "1000")
    with running_pool(cli, tmp_path):  # started after the setting: one attempt, then a long wait
        cancel_during_the_backoff_wait(cli)


def cancel_during_the_backoff_wait(cli: Cli) -> None:
    cli.run("enqueue", "--id", "flaky", "--max-retries", "2", "exit 1")
    cli.run("enqueue", "--id", "done", "true")
    cli.run("enqueue", "--id", "waiting", "true", "--delay", "1h")
    wait_for(lambda: show(cli, "flaky")["state"] == "failed" and show(cli, "done")["attempts"])
    wait_for(lambda: show(cli, "done")["state"] == "completed")
    before = cli.json("list")  # (the pool's heartbeats write: compare the jobs)
    unknown = cli.run("cancel", "flaky", "nope", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "Error: no job with id 'nope'.\n")
    finished = cli.run("cancel", "flaky", "done", check=False)
    assert finished.returncode == 2
    assert "job 'done' is completed" in finished.stderr
    assert cli.json("list") == before  # all or none
    out = cli.run("cancel", "--all-pending").stdout
    assert sorted(out.splitlines()) == ["flaky: cancelled", "waiting: cancelled"]
    assert show(cli, "flaky")["attempts"] == 1
    status = cli.json("status")
    assert status["counts"]["cancelled"] == 2


@PostgresInSoak
def test_pause_holds_every_pool_and_resume_releases_them(cli: Cli, tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    cli.run("enqueue", "--id", "running", gate.command())
    pools = [cli.popen("worker", "run", stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        gate.wait_started()
        assert cli.run("pause").stdout.startswith("Paused")
        assert cli.json("status")["paused"] is True
        assert "Paused" in cli.run("status").stdout
        for n in range(4):
            cli.run("enqueue", "--id", f"held{n}", "true")
        gate.release()  # a running job finishes while paused
        wait_for(lambda: show(cli, "running")["state"] == "completed")
        time.sleep(1.0)  # both pools poll every 20 ms: long enough to have claimed
        assert cli.json("status")["counts"]["pending"] == 4
        waited = cli.run("wait", "--timeout", "60", check=False)
        assert waited.returncode == 1 and "the queue is paused and 4 job(s) wait" in waited.stderr
        cli.run("resume")
        cli.run("wait", "--timeout", "60")
        assert cli.json("status")["counts"]["completed"] == 5
    finally:
        for proc in pools:
            stop_pool(proc)


def test_edit_changes_a_waiting_job_and_refuses_a_claimed_one(cli: Cli, tmp_path: Path) -> None:
    cli.run("enqueue", "--id", "j", "--delay", "1h", "echo old")
    edited = cli.json("edit", "j", "--command", "echo new", "--priority", "5", "--delay", "0s")
    assert (edited["command"], edited["priority"]) == ("echo new", 5)
    gate = Gate(tmp_path)
    cli.run("edit", "j", "--command", gate.command())
    proc = cli.popen("worker", "run", stderr=subprocess.DEVNULL)
    try:
        gate.wait_started()
        # (The pool's heartbeats write, and renew the lease: compare the job's fields.)
        before = {k: v for k, v in show(cli, "j").items() if k != "lease_until"}
        refused = cli.run("edit", "j", "--priority", "1", check=False)
        assert refused.returncode == 2
        assert "processing" in refused.stderr and "not changed" in refused.stderr
        assert {k: v for k, v in show(cli, "j").items() if k != "lease_until"} == before
        gate.release()
    finally:
        stop_pool(proc)


def test_prune_deletes_only_old_finished_jobs_while_pools_run(
    cli: Cli, pool: subprocess.Popen[bytes]
) -> None:
    for n in range(6):
        cli.run("enqueue", "--id", f"old{n}", "exit 1" if n % 2 else "true", "--max-retries", "0")
    cli.run("wait", "--timeout", "60")
    cli.run("enqueue", "--id", "later", "--delay", "1h", "true")
    assert cli.run("prune", "--older-than", "1h").stdout == "Deleted 0 finished job(s).\n"
    time.sleep(1.1)
    dry = cli.json("prune", "--older-than", "1s", "--state", "dead", "--dry-run")
    assert dry == {"deleted": 0, "matched": 3}
    assert cli.json("prune", "--older-than", "1s", "--state", "completed,dead") == {
        "deleted": 6,
        "matched": 6,
    }
    assert [job["id"] for job in cli.json("list")] == ["later"]
    refused = cli.run("prune", "--older-than", "0s", "--state", "pending", check=False)
    assert refused.returncode == 2 and "only finished jobs" in refused.stderr


def test_dlq_move_and_retry_of_any_finished_job(cli: Cli) -> None:
    cli.run("enqueue", "--id", "p", "--delay", "1h", "true")
    assert cli.run("dlq", "move", "p").stdout == "p: moved to the dead letter queue\n"
    assert show(cli, "p")["state"] == "dead"
    again = cli.run("dlq", "move", "p", check=False)
    assert again.returncode == 2 and "only blocked, pending or failed jobs" in again.stderr
    cli.run("enqueue", "--id", "q", "true")
    refused = cli.run("retry", "q", check=False)
    assert refused.returncode == 2 and "job 'q' is pending" in refused.stderr


def test_logs_follow_prints_output_as_it_comes_and_exits_with_the_job(
    cli: Cli, pool: subprocess.Popen[bytes]
) -> None:
    script = "for i in $(seq 1 30); do echo line $i; sleep 0.1; done; echo bye >&2; exit 3"
    cli.run("enqueue", "--id", "talk", "--max-retries", "0", script)
    lines: list[str] = []
    states: list[str] = []
    with subprocess.Popen(
        [QUEUECTL, "logs", "talk", "--follow"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as follower:
        assert follower.stdout is not None and follower.stderr is not None
        for line in follower.stdout:
            lines.append(line.decode().rstrip("\n"))
            if not states:
                states.append(show(cli, "talk")["state"])
        err = follower.stderr.read()
    assert states == ["processing"]  # the first line came while the job ran
    assert lines == [f"line {i}" for i in range(1, 31)]
    assert (err, follower.returncode) == (b"bye\n", 3)


def test_the_pool_directory_setting_for_hosts_that_do_not_share_paths(
    cli: Cli, tmp_path: Path
) -> None:
    cli.run("config", "set", "job_directory", "pool")
    assert cli.run("config", "get", "job_directory").stdout == "job_directory = pool\n"
    here, elsewhere = tmp_path / "enqueuer", tmp_path / "pool-dir"
    here.mkdir()
    elsewhere.mkdir()
    cli.run("enqueue", "--id", "where", "pwd", cwd=here)
    cli.run("enqueue", "--id", "given", "--cwd", str(here), "pwd", cwd=here)
    # Started after the setting: a running pool reads the configuration at its heartbeat.
    cli.run("worker", "run", "--until-empty", cwd=elsewhere)
    assert cli.run("logs", "where").stdout == f"{elsewhere}\n"
    assert cli.run("logs", "given").stdout == f"{here}\n"
    bad = cli.run("config", "set", "job_directory", "elsewhere", check=False)
    assert bad.returncode == 2 and "choose enqueuer or pool" in bad.stderr


def test_the_api_and_old_queue_jobs(queue_target: str, tmp_path: Path) -> None:
    with connect(queue_target) as q:
        job_id = q.enqueue("echo $X", env={"X": "1"}, cwd=str(tmp_path))
        assert q.get(job_id).cwd == str(tmp_path)
        q.pause()
        assert q.paused and q.status().paused
        q.start_workers(1)
        time.sleep(0.5)
        assert q.get(job_id).state == "pending"
        q.resume()
        assert q.wait(timeout=60)
        assert q.logs(job_id) == "1\n"
        assert q.cancel(all_pending=True) == {}


def test_a_cancel_racing_the_finish_records_exactly_one_outcome(
    cli: Cli, pool: subprocess.Popen[bytes]
) -> None:
    """Cancels aimed at jobs that end within milliseconds: whatever wins, the command's answer,
    the job's state and its one attempt agree."""
    with connect(cli.db) as q:
        ids = q.enqueue_many(
            {"id": f"r{n}", "command": f"sleep 0.0{n % 4}", "max_retries": 3} for n in range(40)
        )
        answers: dict[str, str] = {}
        for job_id in ids:

            def started(job_id: str = job_id) -> bool:
                return q.get(job_id).state != "pending"

            wait_for(started, interval=0.001)
            try:
                answers[job_id] = q.cancel(job_id)[job_id].value
            except InvalidTransition:
                answers[job_id] = "finished before"
        q.wait(timeout=60)
        for job_id in ids:
            job, attempts = q.get(job_id), q.attempt_records(job_id)
            assert len(attempts) == 1, job_id  # a cancelled run is never retried
            outcome = attempts[0].outcome
            if answers[job_id] == "cancelled":
                assert (job.state, outcome) == ("cancelled", "cancelled"), job_id
            else:  # the job won: it completed, and the cancel said so or came too late
                assert answers[job_id] in ("completed", "finished before"), job_id
                assert (job.state, outcome) == ("completed", "completed"), job_id
    assert "cancelled" in answers.values(), answers


def test_jobs_from_before_directories_run_where_their_pool_runs() -> None:
    old = Job(
        "old", "pwd", State.PENDING, 0, 0, 0, EPOCH, 0, EPOCH, EPOCH
    )  # no cwd, no enqueued_from: a row of schema version 2
    assert old.directory(Directory.ENQUEUER) is None and old.directory(Directory.POOL) is None
    new = replace(old, enqueued_from="/a")
    assert new.directory(Directory.ENQUEUER) == "/a" and new.directory(Directory.POOL) is None
    given = replace(new, cwd="/b")
    assert given.directory(Directory.ENQUEUER) == given.directory(Directory.POOL) == "/b"


def test_pools_prune_on_their_own_with_retention(queue_target: str) -> None:
    with connect(queue_target) as q:
        q.set_config("lease_seconds", 1)
        q.set_config("max_retries", 0)
        q.enqueue_many(["true", "exit 1", "true"])
        q.enqueue("true", id="later", delay="1h")
        q.start_workers(2)
        wait_for(lambda: q.counts()[State.PENDING] == 1 and not q.counts()[State.PROCESSING])
        q.stop_workers(wait=True)
        assert sum(q.counts().values()) == 4
        q.set_config("retention", 1)
        time.sleep(1.1)
        q.start_workers(1)  # its first heartbeat prunes, then one batch a minute
        wait_for(lambda: sum(q.counts().values()) == 1, what="the finished jobs to be pruned")
        assert [job.id for job in q.job_records()] == ["later"]
        assert q.attempt_records() == []


def test_a_pool_run_until_empty_ends_on_a_paused_queue(cli: Cli) -> None:
    cli.run("enqueue", "--id", "held", "true")
    cli.run("pause")
    ran = cli.run("worker", "run", "--until-empty", timeout=60)
    assert ran.returncode == 0 and "the queue is paused and nothing runs" in ran.stderr
    assert show(cli, "held")["state"] == "pending"
