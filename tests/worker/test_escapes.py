"""Processes that leave a job's process group end with its attempt all the same.

A pool process of its own adopts them (a child subreaper; scenarios in ``adopting.py``, run as
processes of their own); a pool in a process it does not own (a notebook, this test process)
finds them by the attempt's marker in their environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from queuectl.api import connect
from queuectl.model import Outcome, State
from queuectl.worker import procfs
from queuectl.worker.runner import run_command
from tests.conftest import wait_for
from tests.worker.adopting import living, marker_env

ROOT = Path(__file__).resolve().parents[2]


def needle() -> str:
    """A sleep duration no other process on the machine uses."""
    return f"{time.time_ns() % 10**6}.{time.time_ns() % 997}"


def adopting(scenario: str, arg: str, cwd: Path) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "tests.worker.adopting", scenario, arg],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_subreaper_never_reaps_a_shell_of_another_thread(tmp_path: Path) -> None:
    """Sweeps reap orphans while other threads start shells and wait for them: every job
    still gets its own exit code, and no zombie is left."""
    report = adopting("exit_codes", "8", tmp_path)
    assert report == {"wrong": [], "zombies": [], "left": []}


def test_a_subreaper_kills_every_escape_when_the_job_ends(tmp_path: Path) -> None:
    """setsid, a double-forked daemon, and ``env -i setsid`` (no marker: by start time)."""
    report = adopting("escapes", needle(), tmp_path)
    assert report == {"stdout": "started\n", "left": [], "zombies": []}


def test_orphans_of_a_running_attempt_outlive_another_attempts_end(tmp_path: Path) -> None:
    report = adopting("concurrent", needle(), tmp_path)
    assert len(report["after_b"]) == 2  # one with the marker, one without (by start time)
    assert (report["a"], report["after_a"]) == (0, [])


def test_an_orphan_that_ends_while_its_attempt_runs_is_reaped(tmp_path: Path) -> None:
    assert adopting("late_exit", needle(), tmp_path) == {"before": 1, "after": []}


def test_without_a_subreaper_the_marker_finds_escapes() -> None:
    """This process is no subreaper: a setsid child is found by its marker at the job's end."""
    mark = needle()
    result = run_command(
        f"setsid sleep {mark} & sh -c 'setsid sleep {mark} &' ; "
        f"until [ $(pgrep -fc '^sleep {mark}') -ge 2 ]; do sleep 0.01; done; echo started",
        env=marker_env("scan"),
    )
    assert (result.outcome, result.stdout) == (Outcome.COMPLETED, b"started\n")
    assert living(f"sleep {mark}") == []


def test_without_a_subreaper_a_cleared_environment_escapes(tmp_path: Path) -> None:
    """The documented limit of a pool in a process it does not own: a process that left the
    job's tree with no environment cannot be told from the user's own."""
    mark = needle()
    result = run_command(
        f"env -i setsid sleep {mark} & "
        f"until [ $(pgrep -fc '^sleep {mark}') -ge 1 ]; do sleep 0.01; done",
        env=marker_env("scan-cleared"),
    )
    left = living(f"sleep {mark}")
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert result.outcome is Outcome.COMPLETED
    assert len(left) == 1


def test_timeout_signals_processes_outside_the_group() -> None:
    """GNU timeout leaves the group; the SIGTERM reaches it, and it passes it on."""
    mark = needle()
    result = run_command(
        f"timeout 60 sh -c 'trap \"echo term; exit 3\" TERM; sleep {mark} & wait'",
        timeout=0.5,
        env=marker_env("timeout"),
    )
    assert result.outcome is Outcome.TIMEOUT
    assert result.stdout == b"term\n"  # it handled the SIGTERM: no wait for the kill
    assert living(f"sleep {mark}") == []


def test_an_in_process_pool_kills_escapes_at_the_attempts_end(tmp_path: Path) -> None:
    mark = needle()
    with connect(str(tmp_path / "queue.db")) as queue:
        queue.set_config("poll_interval_ms", 20)
        job = queue.enqueue(
            f"setsid sleep {mark} & (setsid sleep {mark} &) ; "
            f"until [ $(pgrep -fc '^sleep {mark}') -ge 2 ]; do sleep 0.01; done"
        )
        queue.start_workers(1)
        try:
            wait_for(lambda: queue.get(job).state is State.COMPLETED, what="the job")
            assert living(f"sleep {mark}") == []
            assert procfs.pids_with_environ((f"QUEUECTL_JOB_ID={job}".encode(),)) == []
        finally:
            queue.stop_workers(wait=True, timeout=60)


def test_the_pid_window_holds_every_process_started_since_the_mark() -> None:
    """What the scanning mode reads: the processes created since an attempt started."""
    before = subprocess.Popen(["sleep", "60"])
    mark = procfs.pid_mark()
    after = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    try:
        assert mark is not None
        window = procfs.pids_since(mark)
        assert all(proc.pid in window for proc in after)
        if mark.last_pid < min(proc.pid for proc in after):  # (the pids did not wrap)
            assert before.pid not in window
    finally:
        for proc in [before, *after]:
            proc.kill()
            proc.wait()
