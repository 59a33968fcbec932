"""The live status panel: an ipywidgets view of one queue that refreshes itself.

A daemon thread re-reads the queue every ``interval`` seconds and only sets widget values, so
the panel stays current while the kernel is busy in another cell, and nothing it does lands
in a cell's output. The thread holds only a weak reference to the panel and stops on
``close()``, when a new panel of the same queue is made (re-running the cell), when the
extension is unloaded, and at interpreter exit.

Buttons (pause or resume the queue, cancel active jobs, retry dead ones; see
``panel_controls``) run in the kernel's main thread: while another cell is running, a click
waits until that cell ends. That is how Jupyter delivers widget events. They return at once
and show what they did, or why they could not, in the message area.
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
from queuectl.model.job import unfinished
from queuectl.panel_controls import JobControls, run_action, set_value
from queuectl.text import cell

_PANELS: weakref.WeakSet[QueuePanel] = weakref.WeakSet()
_LATEST: dict[tuple[str, str | None, str | None], weakref.ref[QueuePanel]] = {}


class QueuePanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type hints
    """Counts per state with a progress bar, live workers, recent jobs, the active jobs (to
    cancel, or follow the output of a running one) and the DLQ; pause/resume the queue."""

    def __init__(
        self,
        queue: Queue,
        interval: float = 1.0,
        recent: int = 10,
        group: str | None = None,
        tag: str | None = None,
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.recent_limit = recent
        self.group = group  #: show only this group's jobs (a sweep's panel)
        self.tag = tag  #: show only the jobs with this tag
        self.title = widgets.HTML()
        self.progress = widgets.IntProgress(
            min=0, max=1, value=0, description="finished", style={"description_width": "initial"}
        )
        self.counts = widgets.HTML()
        self.groups = widgets.HTML()
        self.workers = widgets.HTML()
        self.recent = widgets.HTML()
        self.dead = widgets.SelectMultiple(options=[], rows=4, description="dead")
        self.retry_selected = widgets.Button(description="Retry selected", icon="redo")
        self.retry_all = widgets.Button(description="Retry all dead", icon="redo")
        self.message = widgets.HTML()
        self._lock = threading.RLock()  # one refresh at a time (the refresher's, a button's)
        self.controls = JobControls(queue, self.message, self.refresh, self._lock)
        self.pause, self.active, self.cancel, self.tail = (
            self.controls.pause,
            self.controls.active,
            self.controls.cancel,
            self.controls.tail,
        )
        self.retry_selected.on_click(lambda _: self._retry(all_dead=False))
        self.retry_all.on_click(lambda _: self._retry(all_dead=True))
        super().__init__(
            children=[
                widgets.HBox([self.title, self.pause]),
                widgets.HBox([self.progress, self.counts]),
                self.groups,
                self.workers,
                self.recent,
                *self.controls.children,
                widgets.HBox([self.dead, widgets.VBox([self.retry_selected, self.retry_all])]),
                self.message,
            ]
        )
        scope = "".join(
            f" · {what} <b>{html.escape(name)}</b>"
            for what, name in (("group", group), ("tag", tag))
            if name is not None
        )
        self.title.value = f"<b>queuectl</b> · {html.escape(queue.location)}{scope}"
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
        scope = "".join(
            f", {what}={name!r}"
            for what, name in (("group", self.group), ("tag", self.tag))
            if name is not None
        )
        return f"QueuePanel({self.queue.location}{scope})"

    @property
    def running(self) -> bool:
        """True while the refresher thread runs."""
        return self._thread.is_alive()

    def refresh(self) -> None:
        """Read the queue and update the widgets (the refresher calls this)."""
        with self._lock:
            status = self.queue.status(group=self.group, tag=self.tag)
            counts, total = status.counts, status.total
            done = total - unfinished(counts)  # completed, dead or cancelled
            set_value(self.progress, "max", max(total, 1))
            set_value(self.progress, "value", done)
            set_value(self.progress, "description", _outcomes(counts, done, total))
            set_value(self.progress, "bar_style", _bar_style(counts, done == total))
            set_value(self.counts, "value", _counts_html(counts, status.paused))
            set_value(self.groups, "value", _groups_html(status.groups))
            set_value(self.workers, "value", _workers_html(status.workers))
            recent = self.queue.job_records(limit=self.recent_limit, group=self.group, tag=self.tag)
            set_value(self.recent, "value", _jobs_html(recent))
            self.controls.update(status)
            dead = self.queue.job_records(State.DEAD, 200, group=self.group, tag=self.tag)
            options = tuple((_dead_label(job), job.id) for job in dead)
            if options != self.dead.options:
                chosen = self.dead.value  # new options clear the selection: keep what's left
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
        key = (self.queue.db, self.group, self.tag)
        previous = _LATEST.get(key)
        old = previous() if previous is not None else None
        if old is not None and old is not self:
            old.stop()
        _LATEST[key] = weakref.ref(self)
        _PANELS.add(self)

    def _retry(self, all_dead: bool) -> None:
        def retry() -> str:
            chosen = list(self.dead.value)
            if not all_dead and not chosen:
                raise InvalidInput("select dead jobs first.")
            if all_dead:
                retried = self.queue.retry(all_dead=True, group=self.group, tag=self.tag)
            else:
                retried = self.queue.retry(*chosen, dead_only=True)
            return f"Retried {len(retried)} job(s)."

        run_action(self.message, retry, self.refresh)


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


_CELL = "style='padding:0 8px;text-align:left'"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td {_CELL}>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_html(counts: dict[State, int], paused: bool) -> str:
    table = _html_table([s.value for s in State], [[counts.get(s, 0) for s in State]])
    if not paused:
        return table
    note = "no job starts until the queue is resumed; running jobs finish."
    return f"{table}<b>Paused</b>: {note}"


def _outcomes(counts: dict[State, int], done: int, total: int) -> str:
    """The progress label; how the finished jobs ended when not all completed:
    "19/19 done: 16 ok · 2 dead · 1 cancelled"."""
    label = f"{done}/{total} done"
    others = [f"{counts[s]} {s.value}" for s in (State.DEAD, State.CANCELLED) if counts.get(s)]
    if not others:
        return label
    return f"{label}: {' · '.join([f'{counts.get(State.COMPLETED, 0)} ok', *others])}"


def _bar_style(counts: dict[State, int], all_done: bool) -> str:
    if counts.get(State.DEAD):
        return "danger"
    if not all_done:
        return "info"
    return "warning" if counts.get(State.CANCELLED) else "success"


def _groups_html(groups: dict[str, dict[State, int]]) -> str:
    """One progress line per group (when the queue has groups): finished of all, and how
    many failed (dead or cancelled)."""
    if not groups:
        return ""
    rows = []
    for name, counts in sorted(groups.items(), key=lambda g: (not unfinished(g[1]), g[0]))[:20]:
        total = sum(counts.values())
        done = total - unfinished(counts)
        failed = counts[State.DEAD] + counts[State.CANCELLED]
        bar = f"<progress max='{max(total, 1)}' value='{done}'></progress>"
        rows.append((name, bar, f"{done}/{total}", failed, counts[State.PROCESSING]))
    head = "".join(f"<th {_CELL}>{h}</th>" for h in ("group", "", "done", "failed", "running"))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td {_CELL}>{v if n == 1 else html.escape(cell(v))}</td>" for n, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<b>Groups</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
