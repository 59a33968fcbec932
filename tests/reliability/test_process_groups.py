"""Process groups: whatever way a job ends, no child or grandchild of it is left running."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, wait_for
from tests.reliability.conftest import Pools, processes_with, stop_now


def family(marker: str, started: Path) -> str:
    """A job that forks a shell ignoring SIGTERM, a plain background child, then waits."""
    return (
        f"sh -c 'trap \"\" TERM; sleep {marker}' & sleep {marker} & touch {started}; sleep {marker}"
    )


@pytest.fixture
def marker() -> str:
    """A sleep duration no other process on the machine uses: it names the job's processes."""
    return f"{time.time_ns() % 10**7}.{time.time_ns() % 997}"


def wait_running(marker: str, started: Path) -> None:
    # the job's shell (or its last sleep, if the shell execs it), the shell that ignores
    # SIGTERM and two more sleeps
    wait_for(lambda: started.exists() and len(processes_with(marker)) >= 4, what="the job")


def assert_none_left(marker: str) -> None:
    # Killing is immediate, but the kernel tears a process down asynchronously.
    wait_for(lambda: not processes_with(marker), timeout=30, what="the job's processes to end")


def test_timeout_kills_grandchildren_even_one_that_ignores_sigterm(
    rcli: Cli, tmp_path: Path, marker: str
) -> None:
    job = {"id": "slow", "command": family(marker, tmp_path / "started"), "timeout": 1}
    rcli.run("enqueue", json.dumps({**job, "max_retries": 0}))
    rcli.run("worker", "run", "--until-empty", timeout=120)
    assert_none_left(marker)
    history = rcli.json("show", "slow")["history"]
    assert [a["outcome"] for a in history] == ["timeout"]


def test_stop_now_kills_grandchildren(rcli: Cli, pools: Pools, tmp_path: Path, marker: str) -> None:
    rcli.run("enqueue", "--id", "busy", "--max-retries", "0", family(marker, tmp_path / "started"))
    pool = pools.start(1)
    wait_running(marker, tmp_path / "started")

    stop_now([pool], marker)
    assert pool.wait(timeout=60) == 0
    assert_none_left(marker)
    job = rcli.json("show", "busy")
    assert (job["state"], job["last_error"]) == ("dead", "killed: the worker was stopped")


def test_a_job_that_exits_leaves_nothing_behind(rcli: Cli, tmp_path: Path, marker: str) -> None:
    rcli.run("enqueue", "--id", "quick", f"sleep {marker} & echo forked")
    rcli.run("worker", "run", "--until-empty", timeout=120)
    assert_none_left(marker)
    assert rcli.json("show", "quick")["state"] == "completed"


def test_a_killed_pool_takes_its_running_commands_with_it(
    rcli: Cli, pools: Pools, tmp_path: Path, marker: str
) -> None:
    """The pool's watchdog kills its jobs' process groups when the pool is SIGKILLed."""
    rcli.run("enqueue", "--id", "orphan", family(marker, tmp_path / "started"))
    pool = pools.start(1)
    wait_running(marker, tmp_path / "started")
    pool.send_signal(signal.SIGKILL)
    pool.wait()
    assert_none_left(marker)
