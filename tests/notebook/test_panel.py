"""The live panel, tested without a browser by reading its widget values."""

from __future__ import annotations

import gc

import queuectl
from queuectl.panel import QueuePanel, stop_all
from tests.conftest import wait_for
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
    assert panel.progress.max == 3 and panel.progress.bar_style == "danger"
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
