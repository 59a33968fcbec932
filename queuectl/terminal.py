"""How command results look on a terminal: text, or JSON with ``--json``.

The console script (``cli.py``) prints every result with ``emit``. Whatever it prints passes
through ``text.printable``, except what ``logs`` prints: the bytes the job wrote. The notebook
magic shows results its own way and borrows ``text`` where a notebook shows text too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from functools import singledispatch
from typing import Any, TextIO

import click

from queuectl.commands.results import (
    Cancelled,
    ConfigView,
    Enqueued,
    Following,
    JobDetail,
    JobList,
    Logs,
    Message,
    MetricsReport,
    PanelView,
    Result,
    ResultTable,
    StatusReport,
    SweepEnqueued,
    job_json,
    output_text,
)
from queuectl.errors import NoWorkers, QueuectlError
from queuectl.follow import Chunk, exit_status
from queuectl.model import State
from queuectl.model.status import status_text
from queuectl.text import has_controls, printable, table

#: how a terminal user starts a pool, named where no pool runs
START_WORKERS = "queuectl worker start --count 2"


def error_message(exc: QueuectlError, start_workers: str = START_WORKERS) -> str:
    """The message of ``exc``, naming this front end's way to start a pool where it helps."""
    return exc.naming(start_workers) if isinstance(exc, NoWorkers) else exc.message


@singledispatch
def text(result: Result, start_workers: str = START_WORKERS) -> str:
    """``result`` as plain text, not yet escaped. ``start_workers`` is named in hints."""
    raise NotImplementedError(f"no text for {type(result).__name__}")


@text.register
def _(result: Enqueued, start_workers: str = START_WORKERS) -> str:
    return "\n".join(job.id for job in result.jobs)


@text.register
def _(result: JobList, start_workers: str = START_WORKERS) -> str:
    if not result.jobs:
        return "The dead letter queue is empty." if result.dlq else "No jobs."
    headers = ["id", "state", "attempts", "updated", "last error", "command"]
    rows = [
        (j.id, j.state, f"{j.attempts}/{j.max_retries + 1}", j.updated_at, j.last_error, j.command)
        for j in result.jobs
    ]
    shown = table(headers, rows, width=40)
    if result.total > len(result.jobs):
        shown += f"\n({len(result.jobs)} of {result.total} shown, newest first; use --limit)"
    return shown


@text.register
def _(result: JobDetail, start_workers: str = START_WORKERS) -> str:
    fields = job_json(result.job)
    width = max(len(k) for k in fields)
    lines = [f"{key.ljust(width)}  {_value(v)}" for key, v in fields.items()]
    if result.attempts:
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
            for a in result.attempts
        ]
        headers = ["attempt", "outcome", "exit", "started", "duration", "worker", "error"]
        lines += ["", table(headers, rows, width=50)]
    related = [
        f"{name.ljust(width)}  " + printable(_relatives(jobs), multiline=False)
        for name, jobs in (
            ("parents", result.relatives.parents),
            ("children", result.relatives.children),
        )
        if jobs
    ]
    lines[len(fields) : len(fields)] = related
    return "\n".join(lines)


#: the parents or children ``show`` names (a fan-in after a group can have thousands)
SHOWN_RELATIVES = 20


def _relatives(jobs: Mapping[str, State | None]) -> str:
    """Related jobs with their states, the first ``SHOWN_RELATIVES`` and how many more."""
    shown = [f"{i} ({state or 'pruned'})" for i, state in list(jobs.items())[:SHOWN_RELATIVES]]
    more = len(jobs) - SHOWN_RELATIVES
    return ", ".join(shown) + (f" and {more} more (--json lists them all)" if more > 0 else "")


def _value(value: Any) -> str:
    """A field's value as ``show`` prints it: params and tags as JSON, nothing as "-"."""
    if value is None or value == [] or value == {}:
        return "-"
    shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return printable(shown, multiline=False)


@text.register
def _(result: SweepEnqueued, start_workers: str = START_WORKERS) -> str:
    group, then = result.sweep.group, result.sweep.then
    after = f", then job {then} once they all completed" if then else ""
    return (
        f"{len(result.sweep)} jobs enqueued in group {group}{after}.\n"
        f"Watch: queuectl status --group {group}  Results: queuectl results --group {group}"
    )


@text.register
def _(result: ResultTable, start_workers: str = START_WORKERS) -> str:
    records = result.records()
    if not records:
        return "No jobs."
    columns = list(records[0])
    return table(columns, [list(record.values()) for record in records], width=30)


#: what ``cancel`` says of each job, by its state afterwards
CANCEL_OUTCOMES = {
    State.CANCELLED: "cancelled",
    State.COMPLETED: "already completed (it finished before it could be stopped)",
    State.PROCESSING: "cancel requested; its pool is still stopping it",
}


@text.register
def _(result: Cancelled, start_workers: str = START_WORKERS) -> str:
    if not result.states:
        return "No pending or failed jobs to cancel."
    return "\n".join(
        f"{job_id}: {CANCEL_OUTCOMES.get(state, state.value)}"
        for job_id, state in result.states.items()
    )


@text.register
def _(result: StatusReport, start_workers: str = START_WORKERS) -> str:
    return status_text(result.status, start_workers)


@text.register
def _(result: ConfigView, start_workers: str = START_WORKERS) -> str:
    return "\n".join(
        f"{key} = {value if isinstance(value, str) else format(value, 'g')}"
        for key, value in result.values.items()
    )


@text.register
def _(result: MetricsReport, start_workers: str = START_WORKERS) -> str:
    m = result.metrics
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


@text.register
def _(result: Message, start_workers: str = START_WORKERS) -> str:
    return result.text


@text.register
def _(result: PanelView, start_workers: str = START_WORKERS) -> str:
    recent = text(JobList(result.recent, total=0))
    dlq = text(JobList(result.dead, result.dead_total, dlq=True))
    status = status_text(result.status, start_workers)
    return "\n\n".join(
        [status, f"Jobs (running first, then the newest)\n{recent}", f"Dead letter queue\n{dlq}"]
    )


@singledispatch
def emit(result: Result, as_json: bool) -> int | None:
    """Print ``result`` for a terminal: JSON, or its text with control characters escaped.
    Return the exit code when it is not 0."""
    _print(result, as_json)
    return None


def _print(result: Result, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    shown = printable(text(result))
    if shown:
        click.echo(shown)


@emit.register
def _(result: Logs, as_json: bool) -> int | None:
    if as_json:
        _print(result, as_json)
        return None
    attempt = result.attempt
    raw_controls = _write_output(sys.stdout, attempt.stdout, result.safe)
    raw_controls |= _write_output(sys.stderr, attempt.stderr, result.safe)
    if raw_controls:
        _note_controls()
    return None


@emit.register
def _(result: Following, as_json: bool) -> int | None:
    raw_controls = False
    try:
        for update in result.updates:
            if isinstance(update, Chunk):
                stream = sys.stdout if update.stream == "stdout" else sys.stderr
                raw_controls |= _write_output(stream, update.data, result.safe)
            else:
                if raw_controls:
                    _note_controls()
                return exit_status(update)
    except KeyboardInterrupt:
        return 130
    return None


def _write_output(stream: TextIO, data: bytes, safe: bool) -> bool:
    """Write a job's output: raw (even if it is not UTF-8), or with ``safe`` escaped; return
    whether raw control sequences went to a terminal."""
    if safe:
        data = printable(output_text(data)).encode("utf-8")
    stream.flush()
    stream.buffer.write(data)
    stream.buffer.flush()
    return not safe and stream.isatty() and has_controls(data)


def _note_controls() -> None:
    click.echo(
        "\n(queuectl: this output holds terminal control sequences, printed as they are;"
        " `queuectl logs --safe` shows them escaped)",
        err=True,
    )


@emit.register
def _(result: PanelView, as_json: bool) -> int | None:
    if as_json or result.once or result.refresh is None or not sys.stdout.isatty():
        _print(result, as_json)
        return None
    view, refresh = result, result.refresh
    try:
        while True:
            shown = printable(text(view))  # read before clearing: no flicker
            click.clear()
            click.echo(shown)
            click.echo(f"\n(refreshing every {view.interval:g} s; Ctrl-C to quit)")
            time.sleep(view.interval)
            view = refresh()
    except KeyboardInterrupt:
        pass
    return None
