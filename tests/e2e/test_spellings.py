"""What users of earlier queuectl tools type: ``--db`` after the sub-command, their config keys,
and shell completion through click's protocol."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from queuectl.api import connect
from tests.conftest import QUEUECTL, Cli


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A folder of one's own, where the seed READMEs' ``./queue.db`` lives."""
    folder = tmp_path / "work"
    folder.mkdir(mode=0o700)
    return folder


def run(here: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUECTL_")}
    env["QUEUECTL_HOME"] = str(here / "home")
    proc = subprocess.run(
        [QUEUECTL, *args], cwd=here, env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_db_after_the_sub_command_as_the_seed_readmes_write_it(here: Path) -> None:
    job_id = run(here, "enqueue", "echo hello", "--db", "./queue.db").stdout.strip()
    assert "pending" in run(here, "status", "--db", "./queue.db").stdout
    assert job_id in run(here, "list", "--db", "./queue.db").stdout
    assert "empty" in run(here, "dlq", "list", "--db", "./queue.db").stdout
    assert "max_retries = 3" in run(here, "config", "get", "--db", "./queue.db").stdout
    run(here, "config", "set", "max-retries", "5", "--db", "./queue.db")
    assert run(here, "--db", "./queue.db", "config", "get", "max-retries").stdout == (
        "max_retries = 5\n"
    )
    # The same queue twice is fine; two different ones are refused, and nothing is made.
    run(here, "--db", "./queue.db", "status", "--db", "queue.db", "--db", f"{here}/queue.db")
    refused = run(here, "--db", "./queue.db", "status", "--db", "./other.db", check=False)
    assert refused.returncode == 2 and "--db names two queues" in refused.stderr
    assert not (here / "other.db").exists()
    assert not (here / "home").exists()  # the default queue was never touched


def test_the_seed_readmes_config_keys(here: Path) -> None:
    db = ("--db", "./queue.db")
    run(here, "config", "set", "delay-base", "3000", *db)
    assert run(here, "config", "get", "delay-base", *db).stdout == "delay_base = 3000\n"
    assert run(here, "config", "get", "backoff_base", *db).stdout == "backoff_base = 3\n"
    run(here, "config", "set", "timeout", "1500", *db)
    assert run(here, "config", "get", "timeout", *db).stdout == "timeout = 1500\n"
    assert run(here, "config", "get", "job_timeout", *db).stdout == "job_timeout = 1.5\n"
    run(here, "config", "set", "backoff", "exponential", *db)
    assert run(here, "config", "get", "backoff", *db).stdout == "backoff = exponential\n"
    before = (here / "queue.db").read_bytes()
    for key, value, message in [
        ("backoff", "linear", "only exponential is supported"),
        ("delay-base", "500", "backoff_base"),  # 0.5 s: below the 1 s a base must have
        ("timeout", "-1", "job_timeout"),
    ]:
        refused = run(here, "config", "set", key, value, *db, check=False)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert refused.stderr.startswith("Error:")
    assert (here / "queue.db").read_bytes() == before


def complete(cli: Cli, words: str) -> list[str]:
    """What click's completion protocol offers for the last word of ``words`` (bash)."""
    parts = words.split(" ")
    env = {**cli.env, "_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(parts) - 1)
    proc = subprocess.run([QUEUECTL], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line]  # (none: one empty line)
    assert all(line.startswith(("plain,", "file,", "dir,")) for line in lines), (words, lines)
    return [line.split(",", 1)[1] for line in lines]


def test_completion_offers_commands_options_states_keys_and_job_ids(cli: Cli) -> None:
    with connect(cli.db) as q:
        q.enqueue("true", id="train-1")
        q.enqueue("true", id="train-2")
        q.enqueue("true", id="eval-1")
    assert {"show", "status"} <= set(complete(cli, "queuectl s"))
    assert "--older-than" in complete(cli, "queuectl prune --o")
    assert complete(cli, "queuectl list --state c") == ["completed", "cancelled"]
    assert complete(cli, "queuectl prune --state completed,d") == ["completed,dead"]
    assert "delay-base" in complete(cli, "queuectl config set de")
    assert sorted(complete(cli, "queuectl show train")) == ["train-1", "train-2"]
    assert sorted(complete(cli, "queuectl cancel eval-1 ")) == ["eval-1", "train-1", "train-2"]
    assert complete(cli, "queuectl dlq retry x") == []


def test_completion_reads_the_queue_named_after_the_sub_command(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with connect(str(other)) as q:
        q.enqueue("true", id="elsewhere")
    assert complete(cli, f"queuectl show --db {other} ") == ["elsewhere"]
    missing = tmp_path / "missing.db"
    assert complete(cli, f"queuectl show --db {missing} ") == []
    assert not missing.exists()  # completing never creates a queue


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_its_completion_script(shell: str, tmp_path: Path) -> None:
    env = {**os.environ, "_QUEUECTL_COMPLETE": f"{shell}_source", "QUEUECTL_HOME": str(tmp_path)}
    proc = subprocess.run([QUEUECTL], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "_QUEUECTL_COMPLETE" in proc.stdout
    assert not any(tmp_path.iterdir())  # no queue was opened for it
