"""What commands return, and how each result looks on a terminal: text, or JSON with ``--json``.

The notebook front end receives the same objects and shows them its own way.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from queuectl.api import Queue, QueueStatus
from queuectl.model import Attempt, Job, State, WorkerInfo
from queuectl.model.metrics import Metrics
from queuectl.text import has_controls, iso, printable, status_text, table


def output_text(data: bytes) -> str:
    """Captured output as text. Bytes that are not UTF-8 become lone surrogates, which JSON
    escapes as ``\\udcXX``: ``text.encode("utf-8", "surrogateescape")`` gives the bytes back."""
    return data.decode("utf-8", "surrogateescape")


def job_json(job: Job) -> dict[str, Any]:
    """A job as a JSON-ready dict."""
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
    """A command's result. ``emit`` prints it for a terminal, control characters escaped."""

    def to_json(self) -> Any:
        raise NotImplementedError

    def to_text(self) -> str:
        raise NotImplementedError

    def emit(self, as_json: bool) -> None:
        if as_json:
            click.echo(json.dumps(self.to_json(), indent=2))
        else:
            text = printable(self.to_text())
            if text:
                click.echo(text)


@dataclass
class Enqueued(Result):
    jobs: list[Job]

    def to_json(self) -> Any:
        return [job_json(job) for job in self.jobs]

    def to_text(self) -> str:
        return "\n".join(job.id for job in self.jobs)


@dataclass
class JobList(Result):
    jobs: list[Job]
    total: int
    dlq: bool = False

    def to_json(self) -> Any:
        return [job_json(job) for job in self.jobs]

    def to_text(self) -> str:
        if not self.jobs:
            return "The dead letter queue is empty." if self.dlq else "No jobs."
        headers = ["id", "state", "attempts", "updated", "last error", "command"]
        rows = [
            (
                j.id,
                j.state,
                f"{j.attempts}/{j.max_retries + 1}",
                j.updated_at,
                j.last_error,
                j.command,
            )
            for j in self.jobs
        ]
        text = table(headers, rows, width=40)
        if self.total > len(self.jobs):
            text += f"\n({len(self.jobs)} of {self.total} shown, newest first; use --limit)"
        return text


@dataclass
class JobDetail(Result):
    job: Job
    attempts: list[Attempt]

    def to_json(self) -> Any:
        return {**job_json(self.job), "history": [attempt_json(a) for a in self.attempts]}

    def to_text(self) -> str:
        fields = job_json(self.job)
        width = max(len(k) for k in fields)
        lines = [
            f"{key.ljust(width)}  {'-' if v is None else printable(str(v), multiline=False)}"
            for key, v in fields.items()
        ]
        if self.attempts:
            rows = [
                (
                    a.number,
                    a.outcome or "running",
                    a.exit_code,
                    a.started_at,
                    None if a.duration is None else f"{a.duration:.3f}s",
                    a.worker_id,
                    a.error,
                )
                for a in self.attempts
            ]
            headers = ["attempt", "outcome", "exit", "started", "duration", "worker", "error"]
            lines += ["", table(headers, rows, width=50)]
        return "\n".join(lines)


@dataclass
class Logs(Result):
    """An attempt's output: raw bytes, unless ``safe`` (control characters shown escaped)."""

    attempt: Attempt
    safe: bool = False

    def to_json(self) -> Any:
        return attempt_json(self.attempt)

    def emit(self, as_json: bool) -> None:
        if as_json:
            super().emit(True)
            return
        raw_controls = False
        for stream, data in ((sys.stdout, self.attempt.stdout), (sys.stderr, self.attempt.stderr)):
            if self.safe:
                data = printable(output_text(data)).encode("utf-8")
            else:  # what the job printed comes back unchanged, even if it is not UTF-8
                raw_controls |= stream.isatty() and has_controls(data)
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()
        if raw_controls:
            click.echo(
                "\n(queuectl: this output holds terminal control sequences, printed as they are;"
                " `queuectl logs --safe` shows them escaped)",
                err=True,
            )


@dataclass
class StatusReport(Result):
    status: QueueStatus

    def to_json(self) -> Any:
        return {
            "queue": self.status.location,
            "counts": {state.value: n for state, n in self.status.counts.items()},
            "total": self.status.total,
            "workers": [worker_json(w) for w in self.status.workers],
        }

    def to_text(self) -> str:
        return status_text(self.status)


@dataclass
class ConfigView(Result):
    values: dict[str, int | float]
    single: bool = False  #: one key was asked for

    def to_json(self) -> Any:
        return self.values

    def to_text(self) -> str:
        return "\n".join(f"{key} = {value:g}" for key, value in self.values.items())


@dataclass
class MetricsReport(Result):
    metrics: Metrics
    location: str = ""

    def to_json(self) -> Any:
        return dataclasses.asdict(self.metrics)

    def to_text(self) -> str:
        m = self.metrics
        if not m.attempts:
            return "No finished attempts yet."

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f} s"

        outcomes = ", ".join(f"{k} {v}" for k, v in m.by_outcome.items())
        rate = "-" if m.failure_rate is None else f"{m.failure_rate:.1%}"
        throughput = "-" if m.throughput_per_minute is None else f"{m.throughput_per_minute:.1f}"
        return "\n".join(
            [
                f"attempts finished   {m.attempts} ({outcomes})",
                f"failure rate        {rate}",
                f"runtime mean        {seconds(m.runtime_mean)}",
                f"runtime p50 / p95   {seconds(m.runtime_p50)} / {seconds(m.runtime_p95)}",
                f"runtime max         {seconds(m.runtime_max)}",
                f"throughput          {throughput} jobs/min over the history",
                f"completed last min  {m.completed_last_minute}",
            ]
        )


@dataclass
class Message(Result):
    """A short confirmation; ``data`` is what ``--json`` prints."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Any:
        return self.data

    def to_text(self) -> str:
        return self.text


@dataclass
class PanelView(Result):
    """The live panel. A terminal redraws a text view; the notebook shows a widget."""

    queue: Queue
    interval: float
    once: bool = False
    recent: int = 10

    def to_text(self) -> str:
        queue = self.queue
        dead = queue.counts().get(State.DEAD, 0)
        recent = JobList(queue.job_records(limit=self.recent), total=0).to_text()
        dlq = JobList(queue.job_records(State.DEAD, self.recent), dead, dlq=True).to_text()
        return "\n\n".join(
            [str(queue.status()), f"Recent jobs\n{recent}", f"Dead letter queue\n{dlq}"]
        )

    def to_json(self) -> Any:
        return StatusReport(self.queue.status()).to_json()

    def emit(self, as_json: bool) -> None:
        if as_json or self.once or not sys.stdout.isatty():
            super().emit(as_json)
            return
        try:
            while True:
                text = printable(self.to_text())  # read before clearing: no flicker
                click.clear()
                click.echo(text)
                click.echo(f"\n(refreshing every {self.interval:g} s; Ctrl-C to quit)")
                time.sleep(self.interval)
        except KeyboardInterrupt:
            pass
