"""The live panel, tested without a browser by reading its widget values."""

from __future__ import annotations

import gc
import html
import re
from pathlib import Path

import pytest

import queuectl
from queuectl.panel import QueuePanel, stop_all
from tests.conftest import Gate, group_alive, wait_for
from tests.notebook.conftest import queuectl_threads

TD = "<td style='padding:0 8px;text-align:left;white-space:nowrap'>"  # a table cell's start


def label(panel: QueuePanel) -> str:
    """The progress bar's label, as the panel shows it."""
    found = re.search(r"<div>([^<]*)</div>$", panel.progress.value)
    assert found, panel.progress.value
    return html.unescape(found.group(1))


def said(panel: QueuePanel, earlier: int = 0) -> str:
    """What the message area says about the latest button action (or an ``earlier`` one)."""
    return html.unescape(re.findall(r"<div>(.*?)</div>", panel.message.value)[earlier])


def segments(panel: QueuePanel) -> list[tuple[str, str]]:
    """The progress bar's segments: their tooltips and widths (in %, cut to 2 decimals)."""
    found = re.findall(r"<div title='([^']*)' style='width:(\d+\.?\d{0,2})", panel.progress.value)
    return [(title, width) for title, width in found]


def test_the_panel_follows_jobs_and_workers(queue: queuectl.Queue) -> None:
    panel = queue.panel(interval=0.05)
    assert label(panel) == "0/0 finished"
    assert "No workers running" in panel.workers.value
    queue.enqueue("true", id="ok-1")
    queue.enqueue("true", id="ok-2")
    queue.enqueue("exit 4", id="broken", max_retries=0)
    # one snapshot per refresh: the jobs listed and the counts always agree
    wait_for(lambda: "ok-1" in panel.recent.value, what="the new jobs in the panel")
    assert label(panel) == "0/3 finished: 3 pending"

    pool = queue.start_workers(2)
    assert queue.wait(timeout=30)
    wait_for(lambda: label(panel).startswith("3/3"), what="the panel to count finished jobs")
    panel.refresh()  # (waits for a refresh under way: all widgets show the same moment)
    # dead jobs are finished but not ok: a segment of their own, not a red bar
    assert label(panel) == "3/3 finished: 2 ok · 1 dead"
    assert segments(panel) == [("2 completed", "66.66"), ("1 dead", "33.33")]
    assert (
        "<td style='padding:0 8px;text-align:left;white-space:nowrap'>2</td>" in panel.counts.value
    )
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
    assert said(panel) == "Retried dead-1."
    assert queue.get("dead-1").state == "pending"
    assert sorted(v for _, v in panel.dead.options) == ["dead-0", "dead-2"]

    panel.retry_all.click()
    assert said(panel) == "Retried dead-0, dead-2."
    assert said(panel, 1) == "Retried dead-1."  # the earlier results stay, newest first
    assert panel.dead.options == ()
    assert set(queue.jobs(state="pending").index) == {"dead-0", "dead-1", "dead-2"}
    panel.close()


def test_a_new_panel_of_the_same_queue_stops_the_old_one(queue: queuectl.Queue) -> None:
    first = queue.panel(interval=0.05)
    second = queue.panel(interval=0.05)
    assert not first.running and second.running
    # the old one says so, and its buttons no longer act
    assert "stopped: a newer panel of this queue shows it" in first.title.value
    assert first.retry_all.disabled and first.pause.disabled and first.cancel.disabled
    assert "stopped" not in second.title.value and not second.retry_all.disabled
    second.close()
    assert queuectl_threads() == []


def test_the_text_repr_is_stable(queue: queuectl.Queue) -> None:
    panel = queue.panel(interval=0.05)
    before = repr(panel)
    queue.enqueue("true")
    wait_for(lambda: "/1 finished" in label(panel))
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
    assert said(panel).startswith("Paused: no job starts")
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
    assert not elsewhere.paused and said(panel) == "Resumed: pools start jobs again."

    # The button does what it says, even when the queue changed since the last refresh.
    frozen = queue.panel(interval=60)  # (refreshed by its buttons only)
    assert frozen.pause.description == "Pause"
    elsewhere.pause()
    frozen.pause.click()
    assert said(frozen) == "The queue was paused already."
    assert elsewhere.paused and frozen.pause.description == "Resume"
    # a stopped panel's buttons do nothing
    frozen.stop()
    frozen.pause.click()
    assert elsewhere.paused and frozen.pause.clicks == frozen.pause.handled == 1
    frozen.close()
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
    assert said(panel) == "Cancelled next."
    assert queue.get("next").state == "cancelled"
    assert [value for _, value in panel.active.options] == ["long", "urgent"]

    panel.active.value = ("long", "urgent")
    panel.cancel.click()  # returns at once: the pool stops the running job
    assert said(panel) == "Cancelled urgent; stopping long (running)."
    assert queue.get("urgent").state == "cancelled"
    wait_for(lambda: queue.get("long").state == "cancelled", what="the running job to stop")
    wait_for(lambda: not group_alive(pgid), timeout=10, what="the job's processes to be gone")
    panel.refresh()
    assert panel.active.options == ()
    assert label(panel) == "3/3 finished: 3 cancelled"
    assert segments(panel) == [("3 cancelled", "100.0")]
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
    assert label(mine) == "0/3 finished: 3 pending" and mine.groups.value == ""
    assert panel.running and mine.running  # different scopes: neither replaces the other
    queue.start_workers(2)
    assert queue.wait(timeout=30)
    wait_for(lambda: label(mine).startswith("3/3"), what="the sweep's panel to count its jobs")
    mine.refresh()
    assert label(mine) == "3/3 finished: 2 ok · 1 dead"
    assert [value for _, value in mine.dead.options] == list(first.ids[2:])
    panel.refresh()
    # one line per group: finished of all, failed
    assert (
        "<td style='padding:0 8px;text-align:left;white-space:nowrap'>3/3</td>"
        in panel.groups.value
    )
    queue.stop_workers(wait=True)
    mine.close()
    panel.close()


def test_the_jobs_table_shows_running_jobs_first_and_when_waiting_ones_are_due(
    queue: queuectl.Queue, tmp_path: Path
) -> None:
    gate = Gate(tmp_path)
    queue.enqueue(gate.command(), id="busy", max_retries=3)
    queue.start_workers(1)
    gate.wait_started()
    for n in range(12):  # more new jobs than the table lists
        queue.enqueue("true", id=f"later-{n}", delay="1h")
    try:
        panel = QueuePanel(queue, interval=60, recent=5)
        rows = re.findall(r"<tr>(.*?)</tr>", panel.recent.value)[1:]  # (the first: header)
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
        assert [c[0] for c in cells] == ["busy", "later-11", "later-10", "later-9", "later-8"]
        assert cells[0][1:3] == ["processing", "1/4"]
        assert cells[1][1] in ("pending · due in 59 min", "pending · due in 1 h")
        assert label(panel) == "0/13 finished: 1 running · 12 pending"
        panel.close()
    finally:
        gate.release()
    queue.stop_workers(wait=True)


def test_an_action_button_handles_a_burst_of_clicks_once() -> None:
    from queuectl.panel_controls import ActionButton

    button, calls = ActionButton("Go"), []
    button.on_click(lambda b: calls.append(b.clicks))
    button.click()
    assert calls == [1] and button.handled == 1  # the browser shows "queued" until then
    button.clicks = 3  # two clicks that reached the kernel together: one action
    assert calls == [1, 3] and button.handled == 3
    button.disabled = True
    button.click()
    assert calls == [1, 3] and button.clicks == 3
    button.close()


def test_a_saved_notebook_gets_the_panels_final_state_without_the_path(
    queue: queuectl.Queue,
) -> None:
    from queuectl.panel import saved_views

    panel = queue.panel(interval=60)  # (refreshed by saved_views here, not by time)
    assert "0/0 finished" in panel._repr_mimebundle_()["text/html"]  # as shown at first
    queue.enqueue("exit 2", id="bad", max_retries=0)
    queue.start_workers(1)
    assert queue.wait(timeout=30)
    view = saved_views()[panel.model_id]
    assert "1/1 finished: 1 dead" in view and "<li>bad · exit 2 · exit code 2</li>" in view
    name = queue.location.rsplit("/", 1)[-1]
    assert f"<b>queuectl</b> · {name} · <i>a saved view" in view
    assert queue.location not in view  # (a temporary folder of whoever ran it)
    queue.stop_workers(wait=True)
    shown = panel.model_id
    panel.close()
    assert shown not in saved_views()


def test_a_click_queued_before_its_panel_stopped_does_nothing(queue: queuectl.Queue) -> None:
    queue.enqueue("exit 1", id="dead", max_retries=0)
    queue.start_workers(1)
    assert queue.wait(timeout=30)
    queue.stop_workers(wait=True)
    panel = queue.panel(interval=60)
    panel.stop()
    panel.retry_all.clicks += 1  # sent by the browser before it saw the panel stop
    assert panel.retry_all.handled == panel.retry_all.clicks
    assert queue.get("dead").state == "dead" and "Retried" not in panel.message.value
    panel.close()


def test_blocked_jobs_are_counted_and_said_to_wait_for_their_parents(
    queue: queuectl.Queue,
) -> None:
    queue.enqueue("true", id="parent")
    queue.enqueue("true", id="child", after=["parent"])
    panel = queue.panel(interval=0.05)
    wait_for(lambda: "child" in panel.recent.value, what="the jobs in the panel")
    assert label(panel) == "0/2 finished: 1 pending · 1 blocked"
    assert "1 blocked until their parents finish" in panel.controls.caption.value
    assert "blocked" in panel.recent.value
    panel.close()
