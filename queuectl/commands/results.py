"""What commands return: data, and the JSON that ``--json`` prints.

Each front end shows them its own way: ``queuectl.terminal`` as text on a terminal, the
notebook magic as objects (``magics.present``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from queuectl.follow import Chunk
from queuectl.model import Attempt, Job, QueueStatus, State, WorkerInfo
from queuectl.model.dependencies import Relatives
from queuectl.model.metrics import Metrics
from queuectl.text import iso

if TYPE_CHECKING:
    import pandas as pd

    from queuectl.api import Sweep


def output_text(data: bytes) -> str:
    """Captured output as text. Bytes that are not UTF-8 become lone surrogates, which JSON
    escapes as ``\\udcXX``: ``text.encode("utf-8", "surrogateescape")`` gives the bytes back."""
    return data.decode("utf-8", "surrogateescape")


def job_json(job: Job, *, env: bool = False) -> dict[str, Any]:
    """A job as a JSON-ready dict; with its variables only if ``env`` (they stay out of
    listings: they may hold a token)."""
    return {
        "id": job.id,
        "command": job.command,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "priority": job.priority,
        "run_at": iso(job.run_at),
        "timeout": job.timeout,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "last_error": job.last_error,
        "worker_id": job.worker_id,
        "lease_until": iso(job.lease_until),
        "cwd": job.cwd,
        "enqueued_from": job.enqueued_from,
        "cancel_requested": job.cancel_requested,
        "group": job.group,
        "tags": list(job.tags),
        "params": dict(job.params),
        "after_rule": None if job.after_rule is None else job.after_rule.value,
        "unmet": job.unmet,
        "cancelled_by": job.cancelled_by,
        **({"env": dict(job.env)} if env else {}),
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """An attempt as a JSON-ready dict, with its output tails."""
    return {
        "job_id": attempt.job_id,
        "attempt": attempt.number,
        "worker_id": attempt.worker_id,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "duration": attempt.duration,
        "outcome": attempt.outcome.value if attempt.outcome else None,
        "exit_code": attempt.exit_code,
        "error": attempt.error,
        "stdout": output_text(attempt.stdout),
        "stderr": output_text(attempt.stderr),
        "stdout_bytes": attempt.stdout_bytes,
        "stderr_bytes": attempt.stderr_bytes,
        "result": attempt.result,
    }


def worker_json(worker: WorkerInfo) -> dict[str, Any]:
    """A worker pool as a JSON-ready dict."""
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "threads": worker.threads,
        "started_at": iso(worker.started_at),
        "heartbeat_at": iso(worker.heartbeat_at),
        "stopping": worker.stop_requested,
    }


class Result:
    """A command's result: what to show, and ``to_json`` for ``--json``."""

    def to_json(self) -> Any:
        raise NotImplementedError


@dataclass
class Enqueued(Result):
    jobs: list[Job]

    def to_json(self) -> Any:
        return [job_json(job) for job in self.jobs]


@dataclass
class JobList(Result):
    jobs: list[Job]
    total: int
    dlq: bool = False

    def to_json(self) -> Any:
        return [job_json(job) for job in self.jobs]


@dataclass
class JobDetail(Result):
    job: Job
    attempts: list[Attempt]
    relatives: Relatives = field(default_factory=lambda: Relatives({}, {}))

    def to_json(self) -> Any:
        history = [attempt_json(a) for a in self.attempts]
        return {
            **job_json(self.job, env=True),
            "parents": _states(self.relatives.parents),
            "children": _states(self.relatives.children),
            "history": history,
        }


def _states(jobs: Mapping[str, State | None]) -> list[dict[str, Any]]:
    """Related jobs as ``{"id", "state"}`` objects (a pruned parent's state is null)."""
    return [
        {"id": job_id, "state": None if state is None else state.value}
        for job_id, state in jobs.items()
    ]


@dataclass
class Logs(Result):
    """An attempt's output: raw bytes, unless ``safe`` (control characters shown escaped)."""

    attempt: Attempt
    safe: bool = False

    def to_json(self) -> Any:
        return attempt_json(self.attempt)


@dataclass
class Following(Result):
    """A running attempt's output as it comes (``Chunk``s), then the ended ``Attempt``."""

    updates: Iterator[Chunk | Attempt]
    safe: bool = False

    def to_json(self) -> Any:
        raise TypeError("followed output is a stream, not JSON")


@dataclass
class Cancelled(Result):
    """Each job's state after ``cancel``."""

    states: dict[str, State]

    def to_json(self) -> Any:
        return {job_id: state.value for job_id, state in self.states.items()}


@dataclass
class StatusReport(Result):
    status: QueueStatus

    def to_json(self) -> Any:
        return {
            "queue": self.status.location,
            "counts": {state.value: n for state, n in self.status.counts.items()},
            "total": self.status.total,
            "paused": self.status.paused,
            "workers": [worker_json(w) for w in self.status.workers],
            "groups": {
                name: {state.value: n for state, n in counts.items()}
                for name, counts in self.status.groups.items()
            },
        }


@dataclass
class ConfigView(Result):
    values: dict[str, int | float | str]
    single: bool = False  #: one key was asked for

    def to_json(self) -> Any:
        return self.values


@dataclass
class MetricsReport(Result):
    metrics: Metrics
    location: str = ""

    def to_json(self) -> Any:
        return dataclasses.asdict(self.metrics)


@dataclass
class Message(Result):
    """A short confirmation; ``data`` is what ``--json`` prints."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Any:
        return self.data


@dataclass
class PanelView(Result):
    """What the queue's panel shows now: its status, recent jobs and the DLQ.

    A live view (unless ``once``) shows it again every ``interval`` seconds, as ``refresh``
    reads it then; the front end decides how (a terminal redraws, the notebook has a widget).
    """

    status: QueueStatus
    recent: list[Job]
    dead: list[Job]
    dead_total: int
    interval: float
    once: bool = False
    refresh: Callable[[], PanelView] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> Any:
        return StatusReport(self.status).to_json()


@dataclass
class SweepEnqueued(Result):
    """The handle of the sweep just enqueued (its group and job ids)."""

    sweep: Sweep

    def to_json(self) -> Any:
        return {"group": self.sweep.group, "ids": list(self.sweep.ids), "then": self.sweep.then}


@dataclass
class ResultTable(Result):
    """``results``: the frame of ``Queue.results()``; ``--json`` prints its rows as objects
    (with their ``id``), missing values as ``null``."""

    frame: pd.DataFrame

    def records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts, the index as ``id``, in the frame's column order."""
        flat = self.frame.reset_index()
        columns = [str(column) for column in flat.columns]
        return [
            {column: _plain(value) for column, value in zip(columns, row, strict=True)}
            for row in flat.itertuples(index=False, name=None)
        ]

    def to_json(self) -> Any:
        return self.records()


def _plain(value: Any) -> Any:
    """A cell as JSON takes it: missing values as ``None``, numpy scalars unwrapped."""
    import pandas as pd

    if isinstance(value, list | dict | tuple):
        return value
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value
