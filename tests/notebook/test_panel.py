"""The live panel, tested without a browser by reading its widget values."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import queuectl
from queuectl.panel import QueuePanel, stop_all
from tests.conftest import Gate, group_alive, wait_for
from tests.notebook.conftest import queuectl_threads


def test_the_panel_follows_jobs_and_workers(queue: queuectl.Queue) -> None:
    panel = queue.panel(interval=0.05)
    assert panel.progress.description == "0/0 done"
    assert "No workers running" in panel.workers.value
    queue.enqueue("true", id="ok-1")
    queue.enqueue("true", id="ok-2")
    queue.enqueue("exit 4", id="broken", max_retries=0)
    # (one refresh reads the counts, then the recent jobs: both may see part of the enqueues)
    wait_for(
        lambda: "ok-1" in panel.recent.value and panel.progress.description == "0/3 done",
        what="the new jobs in the panel",
    )

    pool = queue.start_workers(2)
    assert queue.wait(timeout=30)
    wait_for(lambda: panel.progress.value == 3, what="the panel to count finished jobs")
    panel.refresh()  # (waits for a refresh under way: all widgets show the same moment)
    assert panel.progress.max == 3 and panel.progress.bar_style == "danger"
    assert panel.progress.description == "3/3 done: 2 ok · 1 dead"
    assert "<td style='padding:0 8px;text-align:left'>2</td>" in panel.counts.value
    assert pool in panel.workers.value
    assert [value for _, value in panel.dead.options] == ["broken"]
    assert "exit code 4" in panel.dead.options[0][0]

    queue.stop_workers(wait=True)
    wait_for(lambda: "No workers running" in panel.workers.value, what="the pool to go")
    panel.close()
    assert not panel.running and panel.comm is None
    assert queuectl_threads() == []


def test_the_retry_buttons_send_dead_jobs_back(queue: queuectl.Queue) -> None:
    for n in range(3):
        queue.enqueue("exit 1", id=f"dead-{n}", max_retries=0)
    queue.start_workers(1)
    queue.wait(timeout=30)
    queue.stop_workers(wait=True)
    panel = queue.panel(interval=60)  # refreshed by the buttons here, not by time

    panel.retry_selected.click()
    assert "select dead jobs first" in panel.message.value
    panel.dead.value = ("dead-1",)
    panel.retry_selected.click()
    assert panel.message.value == "Retried 1 job(s)."
    assert queue.get("dead-1").state == "pending"
    assert sorted(v for _, v in panel.dead.options) == ["dead-0", "dead-2"]

    panel.retry_all.click()
    assert panel.message.value == "Retried 2 job(s)."
    assert panel.dead.options == ()
    assert set(queue.jobs(state="pending").index) == {"dead-0", "dead-1", "dead-2"}
    panel.close()


def test_a_new_panel_of_the_same_queue_stops_the_old_one(queue: queuectl.Queue) -> None:
    first = queue.panel(interval=0.05)
    second = queue.panel(interval=0.05)
    assert not first.running and second.running
    second.close()


def test_the_text_repr_is_stable(queue: queuectl.Queue) -> None:
    panel = queue.panel(interval=0.05)
    before = repr(panel)
    queue.enqueue("true")
    wait_for(lambda: "1 done" in panel.progress.description or "0/1" in panel.progress.description)
    assert repr(panel) == before == f"QueuePanel({queue.location})"
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == before
    panel.close()


def test_an_unclosed_panel_is_stopped_by_stop_all(queue: queuectl.Queue) -> None:
    QueuePanel(queue, interval=0.05)
    gc.collect()
    assert "queuectl-panel" in queuectl_threads()  # ipywidgets keeps open widgets alive
    stop_all()
    assert queuectl_threads() == []


def test_the_pause_button_pauses_and_resumes_the_queue(
    queue: queuectl.Queue, db_path: Path
) -> None:
    elsewhere = queuectl.connect(str(db_path))  # another process's view of the same file
    panel = queue.panel(interval=0.05)
    assert panel.pause.description == "Pause" and "Paused" not in panel.counts.value

    panel.pause.click()
    assert elsewhere.paused
    assert panel.message.value.startswith("Paused: no job starts")
    assert panel.pause.description == "Resume" and "<b>Paused</b>" in panel.counts.value

    # Paused or resumed elsewhere: the refreshes show it.
    elsewhere.resume()
    wait_for(
        lambda: panel.pause.description == "Pause" and "Paused" not in panel.counts.value,
        what="the panel to see the queue resumed",
    )
    elsewhere.pause()
    wait_for(lambda: panel.pause.description == "Resume", what="the panel to see it paused")
    panel.pause.click()
    assert not elsewhere.paused and panel.message.value == "Resumed: pools start jobs again."

    # The button does what it says, even when the queue changed since the last refresh.
    panel.stop()
    assert panel.pause.description == "Pause"
    elsewhere.pause()
    panel.pause.click()
    assert panel.message.value == "The queue was paused already."
    assert elsewhere.paused and panel.pause.description == "Resume"
    panel.close()
    elsewhere.close()


def test_cancel_stops_pending_and_running_jobs(queue: queuectl.Queue, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    queue.start_workers(1)
    queue.enqueue(f"echo $$ > {pid_file}; sleep 30", id="long")
    pgid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()))
    queue.enqueue("true", id="next")  # the pool's one thread is busy: these wait
    queue.enqueue("true", id="urgent", priority=5)
    panel = queue.panel(interval=60)  # refreshed by the buttons here, not by time
    # Running first, then in the order they will run.
    assert [value for _, value in panel.active.options] == ["long", "urgent", "next"]
    assert panel.active.options[0][0].startswith("long · processing · echo")

    panel.cancel.click()
    assert "select the jobs to cancel first" in panel.message.value
    panel.active.value = ("next",)
    panel.cancel.click()
    assert panel.message.value == "Cancelled 1 job(s)."
    assert queue.get("next").state == "cancelled"
    assert [value for _, value in panel.active.options] == ["long", "urgent"]

    panel.active.value = ("long", "urgent")
    panel.cancel.click()  # returns at once: the pool stops the running job
    assert panel.message.value == "Cancelled 1 job(s); 1 running job is being stopped."
    assert queue.get("urgent").state == "cancelled"
    wait_for(lambda: queue.get("long").state == "cancelled", what="the running job to stop")
    wait_for(lambda: not group_alive(pgid), timeout=10, what="the job's processes to be gone")
    panel.refresh()
    assert panel.active.options == ()
    assert panel.progress.description == "3/3 done: 0 ok · 3 cancelled"
    assert panel.progress.bar_style == "warning"
    panel.close()


def test_the_tail_follows_the_output_of_one_running_job(
    queue: queuectl.Queue, tmp_path: Path
) -> None:
    gate = Gate(tmp_path)
    queue.start_workers(1)
    talk = "for i in $(seq 1 30); do echo line-$i; done; printf '50%%\\r100%%\\n'; echo '<b>&'"
    queue.enqueue(f"{talk}; {gate.command()}", id="talker")
    queue.enqueue("true", id="later", delay="1h")
    panel = queue.panel(interval=0.05)
    wait_for(
        lambda: panel.active.options[:1] and panel.active.options[0][0].startswith("talker · pro"),
        what="the running job in the list",
    )
    panel.active.value = ("later",)  # not running: nothing to follow
    assert panel.tail.value == ""
    panel.active.value = ("talker", "later")
    assert panel.tail.value == ""

    panel.active.value = ("talker",)
    wait_for(lambda: "line-30" in panel.tail.value, what="the output to reach the panel")
    tail = panel.tail.value
    assert tail.startswith("<b>talker</b> · processing · last 20 line(s)<pre")
    assert "line-13\n" in tail and "line-12\n" not in tail  # the last 20 lines only
    assert "\n100%\n" in tail and "50%" not in tail  # a carriage return starts the line over
    assert "&lt;b&gt;&amp;" in tail and "<b>&" not in tail

    gate.release()
    # It ends and leaves the list; what it printed last stays until another pick.
    wait_for(lambda: "talker</b> · completed" in panel.tail.value, what="the job to end")
    assert "finished" in panel.tail.value
    assert [value for _, value in panel.active.options] == ["later"]
    panel.active.value = ("later",)
    assert panel.tail.value == ""
    panel.close()


def test_cancelling_a_job_that_has_just_completed_shows_why(
    queue: queuectl.Queue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = Gate(tmp_path)
    queue.start_workers(1)
    queue.enqueue(gate.command(), id="quick")
    gate.wait_started()
    panel = queue.panel(interval=60)
    panel.active.value = ("quick",)
    gate.release()
    wait_for(lambda: queue.get("quick").state == "completed", what="the job to complete")

    panel.cancel.click()  # raises nothing, prints nothing
    assert "is completed, so there is nothing to cancel" in panel.message.value
    assert "color:#b00" in panel.message.value
    assert capsys.readouterr() == ("", "")
    assert queue.get("quick").state == "completed"
    assert panel.active.options == ()  # the click refreshed the list
    panel.close()


def test_groups_get_a_line_each_and_a_sweep_its_own_panel(queue: queuectl.Queue) -> None:
    queue.set_config("backoff_max", 0)
    first = queue.sweep("exit {code}", code=[0, 0, 3], group="first", max_retries=0)
    queue.sweep("true", n=[1, 2], group="second")
    queue.enqueue("true", id="loose")
    panel = queue.panel(interval=0.05)
    assert "first" in panel.groups.value and "second" in panel.groups.value
    assert "0/3" in panel.groups.value and "0/2" in panel.groups.value
    mine = first.panel(interval=0.05)
    assert "group <b>first</b>" in mine.title.value and repr(mine).endswith("group='first')")
    assert mine.progress.description == "0/3 done" and mine.groups.value == ""
    assert panel.running and mine.running  # different scopes: neither replaces the other
    queue.start_workers(2)
    assert queue.wait(timeout=30)
    wait_for(lambda: mine.progress.value == 3, what="the sweep's panel to count its jobs")
    mine.refresh()
    assert mine.progress.description == "3/3 done: 2 ok · 1 dead"
    assert [value for _, value in mine.dead.options] == list(first.ids[2:])
    panel.refresh()
    # one line per group: finished of all, failed
    assert "<td style='padding:0 8px;text-align:left'>3/3</td>" in panel.groups.value
    queue.stop_workers(wait=True)
    mine.close()
    panel.close()
