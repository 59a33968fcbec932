"""Running commands: exit codes, bounded output, timeouts that leave nothing behind."""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import threading
import time
import uuid
from pathlib import Path

from queuectl.model import Outcome, RunResult
from queuectl.worker.runner import OUTPUT_EVERY, Stop, run_command


def alive(marker: str) -> list[str]:
    """Processes whose command line contains ``marker``."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return out.split()


def test_exit_code_and_both_streams() -> None:
    result = run_command("echo out; echo err >&2; exit 3")
    assert (result.outcome, result.exit_code, result.error) == (Outcome.FAILED, 3, "exit code 3")
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")


def test_missing_command_is_exit_127() -> None:
    result = run_command("no-such-command-anywhere")
    assert result.exit_code == 127
    assert "command not found" in (result.error or "")


def test_output_is_bounded_to_its_tail() -> None:
    result = run_command("head -c 5000000 /dev/zero; printf END", max_bytes=100)
    assert len(result.stdout) == 100
    assert result.stdout.endswith(b"END")


def test_non_utf8_output_is_kept_as_bytes() -> None:
    assert run_command(r"printf '\377\376ok'").stdout == b"\xff\xfeok"


def test_timeout_kills_the_command_and_its_children() -> None:
    marker = f"{uuid.uuid4().int % 10**6}.5"
    result = run_command(f"sleep {marker} & sleep {marker}; echo never", timeout=0.3)
    assert result.outcome is Outcome.TIMEOUT
    assert result.stdout == b""
    assert alive(f"sleep {marker}") == []


def test_timeout_kills_children_that_ignore_sigterm() -> None:
    marker = f"{uuid.uuid4().int % 10**6}.25"
    result = run_command(
        f"sh -c \"trap '' TERM; sleep {marker}\" & trap '' TERM; sleep {marker}", timeout=0.3
    )
    assert result.outcome is Outcome.TIMEOUT
    assert alive(f"sleep {marker}") == []


def test_background_leftovers_are_killed_when_the_shell_exits() -> None:
    marker = f"{uuid.uuid4().int % 10**6}.75"
    result = run_command(f"sleep {marker} & echo started")
    assert (result.outcome, result.stdout) == (Outcome.COMPLETED, b"started\n")
    assert alive(f"sleep {marker}") == []


def test_a_process_that_left_the_group_ends_with_the_job(tmp_path: Path) -> None:
    """``setsid`` escapes the group, but the attempt's marker in its environment names it: it is
    killed when the shell exits (so it no longer holds the job's output open either).
    (More in tests/worker/test_escapes.py.)"""
    marker = f"sleep {uuid.uuid4().int % 10**6}.25"
    escaped = tmp_path / "escaped"  # written once it runs in a session of its own
    env = {"QUEUECTL_JOB_ID": "j", "QUEUECTL_ATTEMPT": "1", "QUEUECTL_WORKER_ID": "runner-test"}
    try:
        result = run_command(
            f"setsid sh -c 'echo $$ > {escaped}; exec {marker}' & "
            f"until [ -s {escaped} ]; do sleep 0.01; done; echo started",
            env=env,
        )
        assert (result.outcome, result.stdout) == (Outcome.COMPLETED, b"started\n")
        assert alive(marker) == []
    finally:
        subprocess.run(["pkill", "-f", marker])


def test_a_stop_ends_a_running_job_with_the_outcome_it_names() -> None:
    stop = Stop()
    threading.Timer(0.2, stop.request).start()
    result = run_command("sleep 30", cancel=stop)
    assert result.outcome is Outcome.FAILED
    assert result.error == "killed: the worker was stopped"
    cancel = Stop()
    threading.Timer(0.2, cancel.request, (Outcome.CANCELLED, "cancelled")).start()
    result = run_command("sleep 30", cancel=cancel)
    assert (result.outcome, result.error) == (Outcome.CANCELLED, "cancelled")


def test_the_first_stop_request_wins() -> None:
    stop = Stop()
    stop.request(Outcome.CANCELLED, "cancelled")
    stop.request(Outcome.FAILED, "lease lost")
    assert (stop.outcome, stop.reason) == (Outcome.CANCELLED, "cancelled")


def test_runs_in_the_given_directory_and_refuses_a_missing_one(tmp_path: Path) -> None:
    assert run_command("pwd", cwd=str(tmp_path)).stdout == f"{tmp_path}\n".encode()
    result = run_command("pwd", cwd=str(tmp_path / "gone"))
    assert result.outcome is Outcome.FAILED and result.exit_code is None
    assert result.error is not None
    assert result.error.startswith(f"could not start: the directory {tmp_path / 'gone'} does not")


def test_reports_output_while_it_runs_and_counts_every_byte() -> None:
    reports: list[RunResult] = []
    moments: list[float] = []

    def report(so_far: RunResult) -> None:
        reports.append(so_far)
        moments.append(time.monotonic())

    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done; head -c 5000 /dev/zero"
    started = time.monotonic()
    result = run_command(script, max_bytes=100, on_output=report)
    # The job runs 2.4 s at least: a report comes, never sooner than OUTPUT_EVERY after the
    # start or after the one before.
    assert reports
    gaps = [b - a for a, b in itertools.pairwise([started, *moments])]
    assert all(gap >= OUTPUT_EVERY for gap in gaps), gaps
    assert all(r.stdout_bytes is not None for r in reports)
    seen = [r.stdout for r in reports]
    assert seen[0].startswith(b"line 1") and seen == sorted(seen, key=len)
    assert result.stdout_bytes == 6 * 7 + 5000 and len(result.stdout) == 100


def test_a_short_job_reports_no_output_on_the_way() -> None:
    reports: list[RunResult] = []
    run_command("echo quick", on_output=reports.append)
    assert reports == []


def test_job_environment() -> None:
    result = run_command('echo "$QUEUECTL_JOB_ID"', env={"QUEUECTL_JOB_ID": "j1"})
    assert result.stdout == b"j1\n"


def test_waiting_out_the_kill_grace_does_not_spin() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run_command("trap '' TERM; sleep 5", timeout=0.2)
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert result.outcome is Outcome.TIMEOUT
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.5  # a busy loop over the 2 s grace would burn about 2 s


def test_a_stop_wakes_the_runner_and_leaves_no_descriptor_open() -> None:
    before = set(os.listdir("/proc/self/fd"))
    stop = Stop()
    run_command("true", cancel=stop)
    stop.request()  # after the run: nothing to wake, nothing fails
    assert set(os.listdir("/proc/self/fd")) == before
    early = Stop()
    early.request(Outcome.CANCELLED, "cancelled")  # before the run even started
    result = run_command("sleep 30", cancel=early)
    assert (result.outcome, result.error) == (Outcome.CANCELLED, "cancelled")
