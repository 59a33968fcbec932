"""The live status panel: an ipywidgets view of one queue that refreshes itself.

A daemon thread re-reads the queue every ``interval`` seconds and only sets widget values, so
the panel stays current while the kernel is busy in another cell, and nothing it does lands
in a cell's output. The thread holds only a weak reference to the panel and stops on
``close()``, when a new panel of the same queue is made (re-running the cell), when the
extension is unloaded, and at interpreter exit.

Buttons (retry dead jobs) run in the kernel's main thread: while another cell is running,
a click waits until that cell ends. That is how Jupyter delivers widget events.
"""

from __future__ import annotations

import atexit
import html
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from queuectl.api import Queue
from queuectl.errors import InvalidInput, QueuectlError
from queuectl.model import Job, State, WorkerInfo
from queuectl.text import cell

_PANELS: weakref.WeakSet[QueuePanel] = weakref.WeakSet()
_LATEST: dict[str, weakref.ref[QueuePanel]] = {}


class QueuePanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type hints
    """Counts per state with a progress bar, live workers, recent jobs and the DLQ."""

    def __init__(self, queue: Queue, interval: float = 1.0, recent: int = 10) -> None:
        self.queue = queue
        self.interval = interval
        self.recent_limit = recent
        self.title = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=1, value=0, description="finished")
        self.counts = widgets.HTML()
        self.workers = widgets.HTML()
        self.recent = widgets.HTML()
        self.dead = widgets.SelectMultiple(options=[], rows=4, description="dead")
        self.retry_selected = widgets.Button(description="Retry selected", icon="redo")
        self.retry_all = widgets.Button(description="Retry all dead", icon="redo")
        self.message = widgets.HTML()
        self.retry_selected.on_click(lambda _: self._retry(all_dead=False))
        self.retry_all.on_click(lambda _: self._retry(all_dead=True))
        super().__init__(
            children=[
                self.title,
                widgets.HBox([self.progress, self.counts]),
                self.workers,
                self.recent,
                widgets.HBox([self.dead, widgets.VBox([self.retry_selected, self.retry_all])]),
                self.message,
            ]
        )
        self.title.value = f"<b>queuectl</b> · {html.escape(queue.location)}"
        self._stop = threading.Event()
        self.refresh()
        self._replace_previous()
        self._thread = threading.Thread(
            target=_refresh_loop,
            args=(weakref.ref(self), self._stop, interval, queue),
            name="queuectl-panel",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        # Stable (no live values), so stored notebook outputs do not change on every run.
        return f"QueuePanel({self.queue.location})"

    @property
    def running(self) -> bool:
        """True while the refresher thread runs."""
        return self._thread.is_alive()

    def refresh(self) -> None:
        """Read the queue and update the widgets (the refresher calls this)."""
        counts = self.queue.counts()
        total = sum(counts.values())
        done = counts.get(State.COMPLETED, 0) + counts.get(State.DEAD, 0)
        _set(self.progress, "max", max(total, 1))
        _set(self.progress, "value", done)
        _set(self.progress, "description", f"{done}/{total} done")
        style = "danger" if counts.get(State.DEAD) else "success" if done == total else "info"
        _set(self.progress, "bar_style", style)
        _set(self.counts, "value", _counts_html(counts))
        _set(self.workers, "value", _workers_html(self.queue.workers()))
        _set(self.recent, "value", _jobs_html(self.queue.job_records(limit=self.recent_limit)))
        dead = self.queue.job_records(State.DEAD, 200)
        options = tuple((_dead_label(job), job.id) for job in dead)
        if options != self.dead.options:
            chosen = self.dead.value  # new options clear the selection: keep what still exists
            self.dead.options = options
            self.dead.value = tuple(v for v in chosen if v in {job.id for job in dead})

    def stop(self) -> None:
        """Stop refreshing (the widgets keep their last values)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self.stop()
        for child in self._all_children():
            child.close()
        super().close()

    def _all_children(self) -> list[Any]:
        found: list[Any] = []
        stack = list(self.children)
        while stack:
            child = stack.pop()
            found.append(child)
            stack.extend(getattr(child, "children", ()))
        return found

    def _replace_previous(self) -> None:
        previous = _LATEST.get(self.queue.db)
        old = previous() if previous is not None else None
        if old is not None and old is not self:
            old.stop()
        _LATEST[self.queue.db] = weakref.ref(self)
        _PANELS.add(self)

    def _retry(self, all_dead: bool) -> None:
        chosen = list(self.dead.value)
        try:
            if not all_dead and not chosen:
                raise InvalidInput("select dead jobs first.")
            retried = self.queue.retry(*chosen, all_dead=all_dead)
            self.message.value = f"Retried {len(retried)} job(s)."
            self.refresh()
        except QueuectlError as exc:
            self.message.value = f"<span style='color:#b00'>{html.escape(exc.message)}</span>"


def stop_all() -> None:
    """Stop the refresher of every panel (at unload and at exit)."""
    for panel in list(_PANELS):
        panel.stop()


atexit.register(stop_all)


def _refresh_loop(
    ref: weakref.ref[QueuePanel], stop: threading.Event, interval: float, queue: Queue
) -> None:
    try:
        while not stop.wait(interval):
            panel = ref()
            if panel is None or panel.comm is None:  # collected or closed
                return
            try:
                panel.refresh()
            except QueuectlError as exc:  # e.g. the database is busy: show it, try again
                panel.message.value = f"refresh failed: {html.escape(exc.message)}"
            except Exception as exc:  # a refresher must never print a traceback into a cell
                panel.message.value = f"refresh stopped: {html.escape(repr(exc))}"
                return
            finally:
                del panel  # no strong reference while sleeping
    finally:
        queue.release()


def _set(widget: Any, name: str, value: Any) -> None:
    """Set a trait only when it changes: every set is a message to the browser."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


_CELL = "style='padding:0 8px;text-align:left'"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td {_CELL}>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_html(counts: dict[State, int]) -> str:
    return _html_table([s.value for s in State], [[counts.get(s, 0) for s in State]])


def _workers_html(workers: list[WorkerInfo]) -> str:
    if not workers:
        return "<i>No workers running.</i>"
    rows = [(w.id, w.host, w.pid, w.threads, w.heartbeat_at) for w in workers]
    return "<b>Workers</b>" + _html_table(["pool", "host", "pid", "threads", "heartbeat"], rows)


def _jobs_html(jobs: list[Job]) -> str:
    if not jobs:
        return "<i>No jobs yet.</i>"
    rows = [(j.id, j.state.value, j.attempts, j.updated_at, j.command) for j in jobs]
    return "<b>Recent jobs</b>" + _html_table(
        ["id", "state", "attempts", "updated", "command"], rows
    )


def _dead_label(job: Job) -> str:
    return f"{job.id} · {cell(job.command)[:40]} · {job.last_error or ''}"
