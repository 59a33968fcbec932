"""A queue's status: counts per state and its live worker pools, and their text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from queuectl.model.job import EVERY_JOB, Job, JobFilter, State, WorkerInfo, unfinished
from queuectl.text import printable, table


@dataclass(frozen=True, repr=False)
class QueueStatus:
    """Counts per state and the live worker pools of a queue.

    ``str()`` (and the notebook display) is the table ``queuectl status`` prints, without the
    hint on how to start a pool: each front end adds its own (``status_text``).
    """

    location: str
    counts: dict[State, int]
    workers: list[WorkerInfo]
    paused: bool = False  #: pools claim nothing until the queue is resumed
    #: jobs per state of each group, when the status is of the whole queue
    groups: dict[str, dict[State, int]] = field(default_factory=dict)
    #: the jobs ``counts`` are of (``EVERY_JOB``: the whole queue)
    scope: JobFilter = EVERY_JOB

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{state.value}={self.counts.get(state, 0)}" for state in State)
        paused = ", paused" if self.paused else ""
        return f"QueueStatus({counts}, workers={len(self.workers)}{paused})"

    def __str__(self) -> str:
        return status_text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # IPython's display: the table, not the short repr


@dataclass(frozen=True)
class QueueSnapshot:
    """What a live view shows, read at one moment (``Queue.snapshot``): the status and the
    jobs listed beside it, so that counts and rows always agree."""

    status: QueueStatus
    #: processing jobs, longest running first
    running: list[Job]
    #: pending and failed jobs, in the order pools take them
    waiting: list[Job]
    #: the newest jobs, newest first
    recent: list[Job]
    #: dead jobs, newest first
    dead: list[Job]
    #: the store's time of the reading (relative times are to this, not the local clock)
    now: datetime

    def running_then_newest(self, limit: int) -> list[Job]:
        """At most ``limit`` jobs for a view's jobs table: the running ones first (a backlog
        of new jobs must not hide them), then the newest of the others."""
        shown = self.running[:limit]
        shown += [job for job in self.recent if job.state is not State.PROCESSING]
        return shown[:limit]


def status_text(status: QueueStatus, start_workers: str | None = None) -> str:
    """Counts per state and the live pools, as ``queuectl status`` prints them.

    With no pool, it names ``start_workers``: how the front end showing it starts one.
    """
    counts = status.counts
    lines = [f"queue: {printable(status.location, multiline=False)}"]
    scope = status.scope
    if scope:
        chosen = [
            f"group {scope.group}" if scope.group else "",
            f"tag {scope.tag}" if scope.tag else "",
        ]
        lines.append(f"jobs of {' with '.join(part for part in chosen if part)}")
    lines.append("")
    lines += [f"  {state.value:<11}{counts.get(state, 0):>8}" for state in State]
    lines += [f"  {'total':<11}{status.total:>8}", ""]
    if status.groups:
        lines += [group_table(status.groups), ""]
    if status.paused:
        lines += ["Paused: no job starts until the queue is resumed; running jobs finish.", ""]
    if not status.workers:
        how = f" Start some with: {start_workers}" if start_workers else ""
        lines.append(f"No workers running.{how}")
        return "\n".join(lines)
    rows = [
        (
            w.id,
            w.host,
            w.pid,
            w.threads,
            w.started_at,
            w.heartbeat_at,
            "stopping" if w.stop_requested else "running",
        )
        for w in status.workers
    ]
    headers = ["worker", "host", "pid", "threads", "started", "heartbeat", "state"]
    lines.append(table(headers, rows))
    return "\n".join(lines)


#: the most groups ``status`` lists; the rest are counted in one line
MAX_GROUPS_SHOWN = 20


def group_table(groups: dict[str, dict[State, int]]) -> str:
    """One line per group: its jobs per state. Groups with unfinished jobs come first."""
    ordered = sorted(groups.items(), key=lambda item: (not unfinished(item[1]), item[0]))
    shown = ordered[:MAX_GROUPS_SHOWN]
    headers = ["group", *(state.value for state in State), "total"]
    rows = [
        (printable(name, multiline=False), *(c[state] for state in State), sum(c.values()))
        for name, c in shown
    ]
    text = table(headers, rows)
    if len(ordered) > len(shown):
        text += (
            f"\n... and {len(ordered) - len(shown)} more groups "
            "(queuectl status --group NAME, or --json for all)"
        )
    return text
