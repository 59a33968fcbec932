"""Processes that leave the job's process group (GNU timeout, setsid, daemons) end with their
attempt, through the installed CLI: at a timeout, a normal end, a stop now, a killed pool."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from queuectl.worker import procfs
from tests.conftest import Cli, wait_for
from tests.reliability.conftest import Pools, processes_with, stop_now


@pytest.fixture
def marker() -> str:
    """A sleep duration no other process on the machine uses: it names the job's processes."""
    return f"{time.time_ns() % 10**7}.{time.time_ns() % 997}"


def carrying(job_id: str) -> list[int]:
    """Live processes whose environment holds the job's id (a zombie's reads as empty)."""
    return procfs.pids_with_environ((f"QUEUECTL_JOB_ID={job_id}".encode(),))


def escapes(marker: str, started: Path) -> str:
    """A job that starts three processes outside its group: a setsid child, a daemon (double
    fork: its parent exits at once) and a setsid child with a cleared environment (no marker:
    found by its start time). It touches ``started`` once the three sleeps run."""
    return (
        f"setsid sleep {marker} & sh -c 'setsid sleep {marker} &' ; "
        f"env -i setsid sleep {marker} & "
        f"until [ $(pgrep -fc '^sleep {marker}') -ge 3 ]; do sleep 0.01; done; touch {started}"
    )


def wait_escaped(marker: str, started: Path) -> None:
    wait_for(lambda: started.exists() and len(processes_with(marker)) >= 3, what="the job")


def test_gnu_timeout_does_not_outlive_a_timed_out_attempt(rcli: Cli, tmp_path: Path) -> None:
    """The reported case: GNU timeout puts itself in a group of its own. Attempt 1 must be dead
    before attempt 2 starts, and neither may run to its end."""
    log = tmp_path / "t"
    inner = (
        "echo start $QUEUECTL_ATTEMPT >> t; "
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do "
        "sleep 0.5; echo tick $QUEUECTL_ATTEMPT >> t; done; "
        "echo end $QUEUECTL_ATTEMPT >> t"
    )
    job = {"id": "t20", "command": f"cd {tmp_path} && timeout 20 sh -c '{inner}'"}
    rcli.run("enqueue", json.dumps({**job, "timeout": 2, "max_retries": 1}))
    rcli.run("worker", "run", "--until-empty", timeout=120)
    shown = rcli.json("show", "t20")
    assert (shown["state"], shown["last_error"]) == ("dead", "timed out after 2 s")
    assert carrying("t20") == []
    time.sleep(7)  # longer than the inner loop: what survived would have written on
    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("start")] == ["start 1", "start 2"]
    assert not [line for line in lines if line.startswith("end")]
    after_second = lines[lines.index("start 2") :]
    assert not [line for line in after_second if line.endswith(" 1")], lines


def test_escapes_are_gone_once_the_attempt_is_recorded(
    rcli: Cli, pools: Pools, tmp_path: Path, marker: str
) -> None:
    rcli.run("enqueue", "--id", "quick", escapes(marker, tmp_path / "started"))
    pool = pools.start(1)
    wait_for(lambda: rcli.json("show", "quick")["state"] == "completed", what="the job")
    assert processes_with(marker) == []  # at once: killed before the result was recorded
    assert carrying("quick") == []
    assert pool.poll() is None


def test_stop_now_kills_escapes(rcli: Cli, pools: Pools, tmp_path: Path, marker: str) -> None:
    command = f"{escapes(marker, tmp_path / 'started')}; sleep {marker}"
    rcli.run("enqueue", "--id", "busy", "--max-retries", "0", command)
    pool = pools.start(1)
    wait_escaped(marker, tmp_path / "started")
    stop_now([pool], marker)
    assert pool.wait(timeout=60) == 0
    assert processes_with(marker) == []
    job = rcli.json("show", "busy")
    assert (job["state"], job["last_error"]) == ("dead", "killed: the worker was stopped")


def test_a_killed_pools_watchdog_kills_escapes_by_their_marker(
    rcli: Cli, pools: Pools, tmp_path: Path, marker: str
) -> None:
    """Those with the marker; the one whose environment was cleared is the documented limit."""
    command = (
        f"setsid sleep {marker} & sh -c 'setsid sleep {marker} &' ; "
        f"until [ $(pgrep -fc '^sleep {marker}') -ge 2 ]; do sleep 0.01; done; "
        f"touch {tmp_path / 'started'}; sleep {marker}"
    )
    rcli.run("enqueue", "--id", "orphan", command)
    pool = pools.start(1)
    wait_for(
        lambda: (tmp_path / "started").exists() and len(processes_with(marker)) >= 3,
        what="the job",
    )
    pool.send_signal(signal.SIGKILL)
    pool.wait()
    wait_for(lambda: not processes_with(marker), timeout=30, what="the job's processes to end")
    assert carrying("orphan") == []
