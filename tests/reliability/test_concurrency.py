"""Concurrent writers: many processes enqueue while pools drain; no "database is locked"."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queuectl import State, connect
from tests.conftest import Cli, wait_for
from tests.reliability.conftest import ON_EVERY_STORE_SOAK_POSTGRES, Figure, Pools

ROOT = Path(__file__).parents[2]


def run_writers(
    cli: Cli, pools: Pools, tmp_path: Path, figure: Figure, writers: int, each: int
) -> None:
    target = str(cli.db)
    pools.start(2)
    pools.start(2)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.writer", target, f"w{w:02d}", str(each)],
            cwd=ROOT,
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(writers)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    enqueued = time.monotonic() - started
    assert [proc.returncode for proc in procs] == [0] * writers, outputs
    reports = [json.loads(out) for out, _ in outputs]
    stderr = b"".join(err for _, err in outputs).decode(errors="replace")
    assert stderr == ""  # no warning, no traceback, nothing
    # A refused enqueue would be reported with its message; with waiting writers there is none.
    assert [e for report in reports for e in report["errors"]] == []
    assert sum(report["ok"] for report in reports) == writers * each

    with connect(target) as queue:
        # Generous: on a shared machine 2 x 2 threads drain a few hundred jobs a second at best.
        drain_timeout = max(300.0, writers * each * 0.05)
        wait_for(lambda: queue.counts()[State.COMPLETED] == writers * each, timeout=drain_timeout)
        ids = {job.id for job in queue.job_records()}
        assert len(queue.attempt_records()) == writers * each  # each job ran once
    drained = time.monotonic() - started
    assert ids == {f"w{w:02d}-{n:04d}" for w in range(writers) for n in range(each)}
    assert pools.terminate_all() == [0, 0]
    logs = pools.log_text()
    assert "locked" not in logs and "Traceback" not in logs and "WARNING" not in logs
    figure(
        f"{writers} writer processes x {each} enqueues ({writers * each} jobs, one transaction "
        f"each) while 2 pools x 2 threads drain: 0 errors, 0 'database is locked'; "
        f"enqueued in {enqueued:.1f} s, all completed after {drained:.1f} s"
    )


@ON_EVERY_STORE_SOAK_POSTGRES
@pytest.mark.timeout(600)
def test_sixteen_writers_and_two_pools(
    rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure
) -> None:
    run_writers(rcli, pools, tmp_path, figure, writers=16, each=120)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_sixty_four_writers_and_two_pools(
    rcli: Cli, pools: Pools, tmp_path: Path, figure: Figure
) -> None:
    run_writers(rcli, pools, tmp_path, figure, writers=64, each=500)
