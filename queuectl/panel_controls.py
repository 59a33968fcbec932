"""The live panel's job controls: pause and resume the queue, cancel active jobs, and follow
the output of one running job.

``JobControls`` is part of a ``QueuePanel``: the panel places its widgets and calls ``update``
on every refresh, holding the panel's lock; the controls take that lock too when the user
picks jobs, so handling a pick never interleaves with a refresh.

Button actions run in the kernel's main thread and return at once: a cancel only asks the
pools to stop running jobs (``wait=False``), and the next refreshes show them end. What an
action did, or why it could not, goes to the panel's message area: nothing is raised out of
a callback and nothing is printed.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# (imported only by queuectl.panel, which a notebook imports when it asks for a panel)
import anywidget
import ipywidgets as widgets
import traitlets

from queuectl.api import Queue
from queuectl.errors import InvalidInput, QueuectlError
from queuectl.model import Job, State
from queuectl.model.status import QueueSnapshot
from queuectl.text import cell, printable

#: at most this many jobs of each active state are read and listed (a backlog can be huge)
ACTIVE_LIMIT = 100
#: the lines of the followed job's output shown
TAIL_LINES = 20
#: the results of the latest button actions the message area keeps, newest first
MESSAGES_KEPT = 3

_TAIL_STYLE = (
    "font-family:monospace;font-size:90%;line-height:1.3;margin:2px 0;padding:4px;"
    "max-height:26em;overflow:auto;white-space:pre-wrap;background:rgba(128,128,128,0.08)"
)


class JobControls:
    """The pause/resume button, the active jobs with a cancel button, and the output tail of
    the one running job picked there."""

    def __init__(
        self,
        queue: Queue,
        message: MessageArea,
        refresh: Callable[[], None],
        lock: threading.RLock,
    ) -> None:
        self.queue = queue
        self.message = message
        self._lock = lock
        self.pause = ActionButton("Pause")
        self.caption = widgets.HTML()
        self.active = widgets.SelectMultiple(
            options=[],
            rows=6,
            description="active",
            layout=widgets.Layout(width="auto", flex="1 1 30em"),
        )
        self.cancel = ActionButton("Cancel selected")
        self.tail = widgets.HTML()
        #: the widgets the panel shows below the recent jobs (it places ``pause`` itself)
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.children = [
            self.caption,
            widgets.HBox([self.active, self.cancel], layout=wrap),
            self.tail,
        ]
        self._paused = False  # what the pause button shows
        self._running: dict[str, Job] = {}  # the processing jobs, by id
        self._tailed: str | None = None  # the job whose output is shown
        self._updating = False  # update() is replacing the options (in the lock's thread)
        self.pause.on_click(lambda _: run_action(message, self._toggle_pause, refresh))
        self.cancel.on_click(lambda _: run_action(message, self._cancel, refresh))
        self.active.observe(self._picked, names="value")

    def update(self, snapshot: QueueSnapshot) -> None:
        """Show whether the queue is paused, the active jobs and the followed job's output.
        The caller holds the lock."""
        status = snapshot.status
        self._paused = status.paused
        set_value(self.pause, "description", "Resume" if status.paused else "Pause")
        running, waiting = snapshot.running, snapshot.waiting
        self._running = {job.id: job for job in running}
        options = tuple((_active_label(job), job.id) for job in running + waiting)
        self._updating = True
        try:
            replace_options(self.active, options)
        finally:
            self._updating = False
        set_value(self.caption, "value", _caption(status.counts, len(waiting)))
        self._show_tail()

    def _picked(self, change: Mapping[str, Any]) -> None:
        """The selection changed: follow the output of one running job picked alone."""
        try:
            with self._lock:
                if self._updating:  # update() in this thread, not the user
                    return
                chosen = self.active.value  # (now: a refresh may have run since the change)
                one_running = len(chosen) == 1 and chosen[0] in self._running
                self._tailed = chosen[0] if one_running else None
                self._show_tail()
        except Exception as exc:  # an observer must not print a traceback into a cell
            self.message.say(error_html(f"could not show the output: {exc!r}"))

    def _show_tail(self) -> None:
        """The last lines of the followed job's latest attempt; once that job has ended, what
        it printed last, until another pick."""
        job_id = self._tailed
        if job_id is None:
            set_value(self.tail, "value", "")
            return
        try:
            job = self._running.get(job_id) or self.queue.get(job_id)
            shown = tail_html(job, self.queue.logs(job_id))
        except QueuectlError as exc:
            shown = error_html(exc.message)
        set_value(self.tail, "value", shown)

    def _toggle_pause(self) -> str:
        if self._paused:  # the button says Resume
            if self.queue.resume():
                return "Resumed: pools start jobs again."
            return "The queue was not paused (resumed meanwhile)."
        if self.queue.pause():
            return "Paused: no job starts until the queue is resumed; running jobs finish."
        return "The queue was paused already."

    def _cancel(self) -> str:
        chosen = list(self.active.value)
        if not chosen:
            raise InvalidInput("select the jobs to cancel first.")
        return cancel_summary(self.queue.cancel(*chosen, wait=False))


class ActionButton(anywidget.AnyWidget):
    """A button that answers at once, in the browser: a click while another cell runs is
    only delivered to the kernel when that cell ends, so the button says it is queued and
    takes no second click until the kernel has handled the first (clicks are never applied
    twice). ``on_click`` handlers run then, in the kernel's main thread."""

    _esm = """
    function render({ model, el }) {
      const button = document.createElement("button");
      button.className = "jupyter-widgets jupyter-button widget-button";
      const note = document.createElement("span");
      note.style.cssText = "margin-left:6px;font-size:90%;opacity:0.8";
      const show = () => {
        const queued = model.get("clicks") > model.get("handled");
        button.textContent = model.get("description");
        button.disabled = model.get("disabled") || queued;
        note.textContent = queued ? "queued: runs when the running cell ends" : "";
      };
      button.addEventListener("click", () => {
        if (button.disabled) return;
        model.set("clicks", model.get("clicks") + 1);
        model.save_changes();
        show();
      });
      const names = ["description", "disabled", "clicks", "handled"];
      for (const name of names) {
        model.on(`change:${name}`, show);
      }
      show();
      el.append(button, note);
      return () => names.forEach((name) => model.off(`change:${name}`, show));
    }
    export default { render };
    """
    description = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    #: clicks made in the browser, and those the kernel has handled
    clicks = traitlets.Int(0).tag(sync=True)
    handled = traitlets.Int(0).tag(sync=True)

    def __init__(self, description: str) -> None:
        super().__init__(description=description)
        self._handlers: list[Callable[[ActionButton], None]] = []
        self.observe(self._clicked, names="clicks")

    def on_click(self, handler: Callable[[ActionButton], None]) -> None:
        """Call ``handler(button)`` once for each click the kernel receives."""
        self._handlers.append(handler)

    def click(self) -> None:
        """Click it, as the browser does."""
        if not self.disabled:
            self.clicks += 1

    def _clicked(self, change: Mapping[str, Any]) -> None:
        if self.clicks <= self.handled:
            return
        if self.disabled:  # queued before its panel stopped: a stopped panel does nothing
            self.handled = self.clicks
            return
        try:
            for handler in self._handlers:
                handler(self)
        finally:
            self.handled = self.clicks


class MessageArea(widgets.HTML):  # type: ignore[misc]  # (ipywidgets has no type hints)
    """The panel's messages, newest first: the last few results of its buttons (clicks
    queued while a cell ran are handled one after another) and its own errors."""

    def __init__(self) -> None:
        super().__init__()
        self._said: list[str] = []

    def say(self, shown: str) -> None:
        """Show ``shown`` (HTML, escaped already) above the earlier messages."""
        self._said = [shown, *self._said][:MESSAGES_KEPT]
        self.value = "".join(f"<div>{message}</div>" for message in self._said)


def run_action(
    message: MessageArea, action: Callable[[], str], refresh: Callable[[], None]
) -> None:
    """Run a button's ``action``, then ``refresh``; show what it did (the text it returns), or
    its error, in ``message``. Raises nothing: a callback's exception would print in a cell."""
    try:
        shown = html.escape(action())
    except QueuectlError as exc:
        shown = error_html(exc.message)
    except Exception as exc:
        shown = error_html(f"unexpected error: {exc!r}")
    try:
        refresh()
    except Exception as exc:
        why = exc.message if isinstance(exc, QueuectlError) else repr(exc)
        shown += " " + error_html(f"(refresh failed: {why})")
    message.say(shown)


def named(job_ids: Sequence[str], most: int = 5) -> str:
    """Job ids for a message: "a, b and 3 more"."""
    shown = ", ".join(cell(job_id, 40) for job_id in job_ids[:most])
    return shown + (f" and {len(job_ids) - most} more" if len(job_ids) > most else "")


def cancel_summary(states: Mapping[str, State]) -> str:
    """What a cancel did, naming the jobs: "Cancelled a, b; stopping c (running)." """
    cancelled = [job_id for job_id, state in states.items() if state is State.CANCELLED]
    stopping = [job_id for job_id, state in states.items() if state is State.PROCESSING]
    parts = [f"Cancelled {named(cancelled)}"] if cancelled else []
    if stopping:
        parts.append(f"stopping {named(stopping)} (running)")
    return "; ".join(parts or ["Cancelled nothing"]) + "."


def tail_html(job: Job, output: str) -> str:
    """The last ``TAIL_LINES`` lines of ``output`` as a terminal would show them, escaped."""
    head = f"<b>{html.escape(cell(job.id))}</b> · {state_text(job)}"
    lines = output.split("\n")
    if lines[-1] == "":
        lines.pop()
    # A carriage return starts its line over (progress bars): keep what is shown last.
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines[-TAIL_LINES:]]
    if not lines:
        return f"{head} · <i>no output{' yet' if job.state.active else ''}</i>"
    body = html.escape(printable("\n".join(lines)))
    return f"{head} · last {len(lines)} line(s)<pre style='{_TAIL_STYLE}'>{body}</pre>"


def error_html(text: str) -> str:
    return f"<span style='color:#b00'>{html.escape(printable(text))}</span>"


def replace_options(select: Any, options: tuple[tuple[str, str], ...]) -> None:
    """Show ``options`` (label, value) in a selection list, keeping what is still listed of
    the selection. Options and selection reach the browser in one message: in two, it would
    apply a selection to options it does not have yet (an error in its console)."""
    if options == select.options:
        return
    listed = {value for _, value in options}
    chosen = tuple(value for value in select.value if value in listed)
    with select.hold_sync():
        select.options = options
        select.value = chosen


def set_value(widget: Any, name: str, value: Any) -> None:
    """Set a trait only when it changes: every set is a message to the browser."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def state_text(job: Job) -> str:
    """A job's state, "stopping" for a running job asked to cancel."""
    if job.state is State.PROCESSING and job.cancel_requested:
        return "stopping"
    return job.state.value


def _active_label(job: Job) -> str:
    return f"{job.id} · {state_text(job)} · {cell(job.command, 40)}"


def _caption(counts: Mapping[State, int], listed: int) -> str:
    text = "<b>Active jobs</b> · running first, then the next to run"
    waiting = counts.get(State.PENDING, 0) + counts.get(State.FAILED, 0)
    if waiting > listed:
        text += f" · the first {listed} of the {waiting} waiting jobs"
    if counts.get(State.BLOCKED):
        text += f" · {counts[State.BLOCKED]} blocked until their parents finish (not listed)"
    return text
