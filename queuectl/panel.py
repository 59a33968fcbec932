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
import contextlib
import html
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import ipywidgets as widgets

from queuectl.api import Queue
from queuectl.errors import InvalidInput, QueuectlError
from queuectl.model import Job, State, WorkerInfo
from queuectl.model.job import unfinished
from queuectl.panel_controls import (
    ACTIVE_LIMIT,
    ActionButton,
    JobControls,
    MessageArea,
    named,
    replace_options,
    run_action,
    set_value,
    state_text,
)
from queuectl.text import cell, relative

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
        #: the segmented bar and its label: completed, dead, cancelled ... apart
        self.progress = widgets.HTML(layout=_fitting())
        self.counts = widgets.HTML(layout=_fitting())
        self.groups = widgets.HTML(layout=_fitting())
        self.workers = widgets.HTML(layout=_fitting())
        self.recent = widgets.HTML(layout=_fitting())
        self.dead = widgets.SelectMultiple(
            options=[],
            rows=4,
            description="dead",
            layout=widgets.Layout(width="auto", flex="1 1 24em"),
        )
        self.retry_selected = ActionButton("Retry selected")
        self.retry_all = ActionButton("Retry all dead")
        self.message = MessageArea()
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
                widgets.HBox([self.title, self.pause], layout=_WRAP),
                self.progress,
                self.counts,
                self.groups,
                self.workers,
                self.recent,
                *self.controls.children,
                widgets.HBox(
                    [self.dead, widgets.VBox([self.retry_selected, self.retry_all])],
                    layout=_WRAP,
                ),
                self.message,
            ]
        )
        self.title.value = f"<b>queuectl</b> · {html.escape(queue.location)}{self._scope_html()}"
        self._stop = threading.Event()
        self._stopped_shown = False
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

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # Beside the widget: the panel as it was when shown, for viewers that cannot render
        # widgets (a saved notebook on a code host); scripts/refresh_notebooks.py stores the
        # final state there instead.
        bundle: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = self.static_html()
        return bundle

    def static_html(self) -> str:
        """The panel as it shows now, as plain HTML without widgets (its relative times are
        as of now): what a saved notebook shows where widgets cannot render. The queue is
        named by its file name (a path may be a temporary folder of whoever ran it)."""
        with self._lock:
            where = self.queue.location.rstrip("/").rsplit("/", 1)[-1]
            title = f"<b>queuectl</b> · {html.escape(where)}{self._scope_html()}"
            dead = "".join(f"<li>{html.escape(label)}</li>" for label, _ in self.dead.options)
            parts = [
                f"{title} · <i>a saved view of the live panel</i>",
                self.progress.value,
                self.counts.value,
                self.groups.value,
                self.recent.value,
                f"<b>Dead letter queue</b><ul>{dead}</ul>" if dead else "",
            ]
        return "".join(f"<div>{part}</div>" for part in parts if part)

    def _scope_html(self) -> str:
        return "".join(
            f" · {what} <b>{html.escape(name)}</b>"
            for what, name in (("group", self.group), ("tag", self.tag))
            if name is not None
        )

    @property
    def running(self) -> bool:
        """True while the refresher thread runs."""
        return self._thread.is_alive()

    def refresh(self) -> None:
        """Read the queue (one snapshot: counts and rows agree) and update the widgets (the
        refresher calls this)."""
        with self._lock:
            shot = self.queue.snapshot(
                group=self.group, tag=self.tag, recent=self.recent_limit, listed=ACTIVE_LIMIT
            )
            status, now = shot.status, shot.now
            set_value(self.progress, "value", progress_html(status.counts))
            set_value(self.counts, "value", _counts_html(status.counts, status.paused))
            set_value(self.groups, "value", _groups_html(status.groups))
            set_value(self.workers, "value", _workers_html(status.workers, now))
            shown = shot.running_then_newest(self.recent_limit)
            set_value(self.recent, "value", _jobs_html(shown, now))
            self.controls.update(shot)
            replace_options(self.dead, tuple((_dead_label(job), job.id) for job in shot.dead))

    def stop(self, why: str = "stopped") -> None:
        """Stop refreshing: the widgets keep their last values, the title says ``why`` and
        the buttons are disabled, so a stale panel never looks live."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if not self._stopped_shown:
            self._stopped_shown = True
            note = f" · <span style='color:#b00'>{html.escape(why)}</span>"
            self.title.value += note
            for child in self._all_children():
                if isinstance(child, ActionButton | widgets.SelectMultiple):
                    child.disabled = True

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
            old.stop(
                "stopped: a newer panel of this queue shows it (re-run this cell for a live one)"
            )
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
            return (
                f"Retried {named([job.id for job in retried])}." if retried else "Retried nothing."
            )

        run_action(self.message, retry, self.refresh)


def saved_views() -> dict[str, str]:
    """The static view of every panel of this process, by its widget's model id (for
    storing notebooks with the panels' final state; see ``static_html``)."""
    views = {}
    for panel in list(_PANELS):
        if panel.comm is None:  # closed
            continue
        if panel.running:
            # the state now, not the last refresh's; if its queue was closed, the latter
            with contextlib.suppress(Exception):
                panel.refresh()
        views[panel.model_id] = panel.static_html()
    return views


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
                panel.message.say(f"refresh failed: {html.escape(exc.message)}")
            except Exception as exc:  # a refresher must never print a traceback into a cell
                panel.message.say(f"refresh stopped: {html.escape(repr(exc))}")
                stop.set()
                panel.stop("stopped: refreshing failed (see below)")
                return
            finally:
                del panel  # no strong reference while sleeping
    finally:
        queue.release()


_CELL = "style='padding:0 8px;text-align:left;white-space:nowrap'"


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


#: how the progress bar shows each state (colours as in dask's progress bars), in its order
_SEGMENTS: tuple[tuple[State, str, str], ...] = (
    (State.COMPLETED, "ok", "#43a047"),
    (State.DEAD, "dead", "#e53935"),
    (State.CANCELLED, "cancelled", "#9e9e9e"),
    (State.PROCESSING, "running", "#1e88e5"),
    (State.FAILED, "to retry", "#fb8c00"),
)
#: the unfinished states the bar leaves empty, named after the others in its label
WAITING_ON = (State.PENDING, State.BLOCKED)
_WRAP = widgets.Layout(flex_flow="row wrap", align_items="center")


def _fitting() -> widgets.Layout:
    """A box as wide as the panel at most, scrolling sideways what does not fit (a table in
    a narrow notebook) instead of letting it stick out."""
    return widgets.Layout(max_width="100%", overflow="auto")


def progress_html(counts: dict[State, int], height: str = "14px") -> str:
    """A bar with a segment per state (completed, dead, cancelled, running, waiting for a
    retry; pending and blocked are the empty rest) and its label: "18/20 finished: 16 ok ·
    2 dead · 2 running". Dead jobs are finished but never "ok", and a dead job colours its
    own segment, not the whole bar."""
    total = sum(counts.values())
    finished = total - unfinished(counts)
    segments = "".join(
        f"<div title='{counts[state]} {state.value}' style='width:{100 * counts[state] / total}%;"
        f"background:{colour}'></div>"
        for state, _, colour in _SEGMENTS
        if counts.get(state)
    )
    bar = (
        f"<div style='display:flex;width:100%;max-width:40em;height:{height};"
        "background:rgba(128,128,128,0.18);border-radius:3px;overflow:hidden'>"
        f"{segments}</div>"
    )
    parts = [f"{counts[state]} {name}" for state, name, _ in _SEGMENTS if counts.get(state)]
    parts += [f"{counts[state]} {state.value}" for state in WAITING_ON if counts.get(state)]
    label = f"{finished}/{total} finished" + (f": {' · '.join(parts)}" if parts else "")
    return f"{bar}<div>{html.escape(label)}</div>"


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
        bar = progress_html(counts, "10px").split("<div>")[0]  # the bar, without its label
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


def _workers_html(workers: list[WorkerInfo], now: datetime) -> str:
    if not workers:
        return "<i>No workers running.</i>"
    rows = [(w.id, w.host, w.pid, w.threads, relative(w.heartbeat_at, now)) for w in workers]
    return "<b>Workers</b>" + _html_table(["pool", "host", "pid", "threads", "heartbeat"], rows)


def _jobs_html(jobs: list[Job], now: datetime) -> str:
    if not jobs:
        return "<i>No jobs yet.</i>"
    rows = [
        (
            j.id,
            _job_state(j, now),
            f"{j.attempts}/{j.max_retries + 1}",
            relative(j.updated_at, now),
            j.last_error or "",
            cell(j.command, 40),
        )
        for j in jobs
    ]
    return "<b>Jobs</b> · running first, then the newest" + _html_table(
        ["id", "state", "attempts", "updated", "last error", "command"], rows
    )


def _job_state(job: Job, now: datetime) -> str:
    """A job's state as the panel lists it: when a waiting job is due, a running one that
    is being stopped."""
    if job.state in (State.PENDING, State.FAILED) and job.run_at > now:
        return f"{job.state.value} · due {relative(job.run_at, now)}"
    return state_text(job)


def _dead_label(job: Job) -> str:
    return f"{job.id} · {cell(job.command)[:40]} · {job.last_error or ''}"
