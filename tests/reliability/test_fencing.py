"""Fencing: a pool frozen past its lease (SIGSTOP, then SIGCONT) cannot record its stale result
over the job that another pool recovered."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import Cli, wait_for
from tests.reliability.conftest import Pools, freeze


def job_command(flags: Path) -> str:
    """Attempt 1 prints 'stale', later attempts 'fresh'; each waits for its release file."""
    return (
        f"n=$QUEUECTL_ATTEMPT; touch {flags}/started$n; "
        f"while [ ! -e {flags}/release$n ]; do sleep 0.02; done; "
        'if [ "$n" = 1 ]; then echo stale; else echo fresh; fi'
    )


@pytest.mark.parametrize("stale_arrives", ["while-the-rerun-runs", "after-the-rerun-completed"])
def test_a_frozen_worker_cannot_record_over_the_recovered_job(
    rcli: Cli, pools: Pools, tmp_path: Path, stale_arrives: str
) -> None:
    rcli.run("config", "set", "lease_seconds", "1")
    rcli.run("enqueue", json.dumps({"id": "fenced", "command": job_command(tmp_path)}))
    frozen = pools.start(1)
    wait_for((tmp_path / "started1").exists, what="attempt 1 to start")
    freeze(frozen, str(rcli.db))

    rescuer = pools.start(1)
    wait_for((tmp_path / "started2").exists, timeout=60, what="the rescuer to rerun the job")
    job = rcli.json("show", "fenced")
    assert job["state"] == "processing" and job["attempts"] == 2
    assert job["history"][0]["outcome"] == "lost"
    assert job["history"][0]["worker_id"].split(":")[1] == str(frozen.pid)
    assert job["worker_id"].split(":")[1] == str(rescuer.pid)

    if stale_arrives == "after-the-rerun-completed":
        (tmp_path / "release2").touch()
        wait_for(lambda: rcli.json("show", "fenced")["state"] == "completed", what="rerun")
    (tmp_path / "release1").touch()  # the stale run ends while its pool is frozen
    frozen.send_signal(signal.SIGCONT)
    wait_for(
        lambda: "job fenced attempt 1: lease lost, result discarded" in pools.log_text(),
        timeout=60,
        what="the thawed pool to try to record its result",
    )
    if stale_arrives == "while-the-rerun-runs":
        job = rcli.json("show", "fenced")
        assert (job["state"], job["attempts"], job["worker_id"].split(":")[1]) == (
            "processing",
            2,
            str(rescuer.pid),
        )
        (tmp_path / "release2").touch()
        wait_for(lambda: rcli.json("show", "fenced")["state"] == "completed", what="rerun")

    job = rcli.json("show", "fenced")
    assert [a["outcome"] for a in job["history"]] == ["lost", "completed"]
    assert rcli.run("logs", "fenced").stdout == "fresh\n"
    assert rcli.run("logs", "fenced", "--attempt", "1").stdout == ""  # 'stale' never stored
    assert rcli.json("metrics")["by_outcome"]["completed"] == 1
    assert pools.terminate_all() == [0, 0]  # the thawed pool carries on and stops cleanly
