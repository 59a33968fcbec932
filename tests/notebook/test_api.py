"""The Python API a notebook uses: connect, enqueue, pools in this process, wait, history."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import queuectl
from queuectl.errors import InvalidInput, NoWorkers
from tests.notebook.conftest import queuectl_threads


def test_enqueue_takes_the_job_fields_as_keywords(queue: queuectl.Queue) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    job_id = queue.enqueue(
        "echo hi", id="j1", max_retries=5, priority=7, run_at=later.isoformat(), timeout=2.5
    )
    assert job_id == "j1"
    job = queue.get("j1")
    assert (job.max_retries, job.priority, job.timeout) == (5, 7, 2.5)
    assert abs((job.run_at - later).total_seconds()) < 0.01
    generated = queue.enqueue("true")
    assert len(generated) == 10
    with pytest.raises(InvalidInput, match="priority"):
        queue.enqueue("true", priority="high")
    with pytest.raises(InvalidInput, match="unknown"):
        queue.enqueue("true", retries=3)
    assert len(queue.jobs()) == 2


def test_a_sweep_runs_in_this_process_and_its_history_is_a_frame(queue: queuectl.Queue) -> None:
    for n in range(8):
        queue.enqueue(f"test {n} -lt 6", id=f"sweep-{n}", max_retries=1)
    queue.set_config("backoff_max", 0)
    queue.start_workers(3)
    assert {"queuectl-worker-1", "queuectl-worker-3"} <= set(queuectl_threads())
    assert queue.wait(timeout=60)

    history = queue.attempts()
    assert len(history) == 6 + 2 * 2  # two jobs fail twice (1 retry each)
    failures = history.groupby("command")["exit_code"].apply(lambda s: (s != 0).mean())
    assert failures["test 7 -lt 6"] == 1.0 and failures["test 0 -lt 6"] == 0.0
    assert history["duration"].quantile(0.95) > 0
    per_minute = history.set_index("finished_at").resample("1min")["job_id"].count()
    assert per_minute.sum() == 10
    assert set(queue.dlq().index) == {"sweep-6", "sweep-7"}
    jobs = queue.jobs()
    assert (jobs.state >= "completed").all()  # an ordered Categorical

    queue.stop_workers(wait=True)
    assert queuectl_threads() == []


def test_waiting_with_no_worker_pool_fails_at_once(queue: queuectl.Queue) -> None:
    assert queue.wait(timeout=1)  # nothing to wait for
    queue.enqueue("true")
    with pytest.raises(NoWorkers, match="no worker pool"):
        queue.wait(timeout=30)


def test_wait_gives_up_after_its_timeout(queue: queuectl.Queue) -> None:
    queue.enqueue("sleep 5", timeout=10)
    queue.start_workers(1)
    assert queue.wait(timeout=0.3) is False
    queue.stop_workers()


def test_wait_can_show_a_progress_bar(
    queue: queuectl.Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(4):
        queue.enqueue("true")
    queue.start_workers(2)
    assert queue.wait(timeout=30, progress=True)
    err = capsys.readouterr().err
    # The bar counts the jobs unfinished when waiting began: a job may finish before that.
    done = re.search(r"\|\s*(\d)/\1 \[", err.rsplit("\r", 1)[-1])
    assert done and f"completed={done.group(1)}" in err  # this wait's jobs, all completed
    queue.wait(timeout=30, progress=False)
    assert capsys.readouterr().err == ""
    # nothing left to wait for: no empty 0/0 bar
    assert queue.wait(timeout=30, progress=True) and capsys.readouterr().err == ""
    # the bar's text counts this wait's jobs, not the queue's totals
    queue.enqueue("exit 3", max_retries=0)
    assert queue.wait(timeout=30, progress=True)
    last = capsys.readouterr().err.rsplit("\r", 1)[-1]
    assert "1/1" in last and "dead=1" in last and "completed=0" in last, last


def test_closing_the_queue_stops_its_pools(db_path: str) -> None:
    with queuectl.connect(str(db_path)) as q:
        q.start_workers(2)
        q.enqueue("true")
    assert queuectl_threads() == []
    with queuectl.connect(str(db_path)) as q, pytest.raises(InvalidInput, match="between 1"):
        q.start_workers(0)


EXIT_WHILE_JOBS_RUN = """
import gc, sys, time
import queuectl

queue = queuectl.connect(sys.argv[1])
queue.start_workers(2)
queue.enqueue_many(["echo $$ >> " + sys.argv[2] + "; sleep 60"] * 2)
while queue.counts()[queuectl.State.PROCESSING] < 2:
    time.sleep(0.01)
queue.close(wait=False)  # as unloading the magic does
del queue
gc.collect()
"""


def test_exiting_after_closing_without_waiting_still_kills_and_records_the_jobs(
    db_path: Path, tmp_path: Path
) -> None:
    """The exit handler must find pools whose queue was closed and collected."""
    pids = tmp_path / "pids"
    subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_JOBS_RUN, str(db_path), str(pids)],
        check=True,
        timeout=60,
    )
    with queuectl.connect(str(db_path)) as q:
        jobs = q.job_records()
    assert [job.state for job in jobs] == [queuectl.State.FAILED] * 2
    assert {job.last_error for job in jobs} == {"killed: the worker was stopped"}
    for pid in pids.read_text().split():
        assert not Path(f"/proc/{pid}").exists(), "a job's shell outlived the process"
