"""The ``%queuectl`` line magic: the CLI's click group, run inside IPython.

``%queuectl ARGS`` runs exactly the commands of the ``queuectl`` console script and hands their
results to the notebook as objects: tables as DataFrames, ``status`` as a ``QueueStatus``,
``enqueue`` as the job id, ``panel`` as a live widget. User mistakes raise ``UsageError``
(shown without a traceback); click never exits the kernel.

Which queue: ``--db`` on the line, else the notebook-wide default set with ``%queuectl use
PATH_OR_URL`` (the one sub-command that exists only here), else ``QUEUECTL_DB``, else the
default file. Queues stay open across cells, so ``worker start`` pools (threads of the kernel)
keep running between cells.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from functools import singledispatch
from typing import Any

import click
from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_magic,
    magics_class,
    no_var_expand,
    output_can_be_silenced,
)

from queuectl import frames
from queuectl.api import Queue, connect
from queuectl.commands import Result, Session, cli
from queuectl.commands.results import (
    ConfigView,
    Enqueued,
    Following,
    JobDetail,
    JobList,
    Logs,
    Message,
    MetricsReport,
    PanelView,
    ResultTable,
    StatusReport,
    SweepEnqueued,
)
from queuectl.errors import QueuectlError
from queuectl.follow import Chunk
from queuectl.model import QueueStatus
from queuectl.model.status import status_text
from queuectl.store import redact, resolve_location
from queuectl.terminal import error_message, text
from queuectl.text import printable
from queuectl.web.command import dashboard

cli.add_command(dashboard)  # as the console script has it; here it says to use a terminal

PROG = "%queuectl"
#: how a notebook user starts a pool, named where no pool runs
START_WORKERS = f"{PROG} worker start --count 2"


class Notebook:
    """The magic's state: the default queue of this notebook and the queues it opened."""

    def __init__(self) -> None:
        self.default: str | None = None
        self.queues: dict[str, Queue] = {}

    def queue(self, db: str | None) -> Queue:
        """The open queue for ``db`` (else the default), opened on first use."""
        location = _absolute(resolve_location(db if db is not None else self.default))
        if location not in self.queues:
            self.queues[location] = connect(location)
        return self.queues[location]

    def use(self, location: str) -> str:
        """Make ``location`` the default queue of this notebook (it is opened to check it).

        A relative path is made absolute now, so a later ``%cd`` does not move the queue.
        """
        queue = self.queue(_absolute(location))
        self.default = queue.db
        return queue.location

    def close(self) -> None:
        """Stop the pools of the queues opened here and close the queues, at once: jobs still
        running finish in the background and are recorded, then the pool threads end."""
        for queue in self.queues.values():
            queue.close(wait=False)
        self.queues.clear()


def _absolute(location: str) -> str:
    """A path made absolute now, so that a later ``%cd`` does not move the queue."""
    return location if "://" in location else os.path.abspath(os.path.expanduser(location))


#: the magic's state, kept across %reload_ext (which re-imports only the top package)
NOTEBOOK = Notebook()


def run_line(line: str, notebook: Notebook) -> Any:
    """Run one magic line; return what the notebook should show."""
    line = line.strip()
    if line.endswith(";"):  # IPython passes the silencing ';' through
        line = line[:-1].rstrip()
    try:
        args = shlex.split(line)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"{PROG}: {exc}.") from None
    if args[:1] == ["use"]:
        return _use(args[1:], notebook)
    if not args:
        args = ["--help"]  # as `queuectl` alone does
    session = Session(in_kernel=True, opener=notebook.queue)
    try:
        with cli.make_context(PROG, args, obj=session) as ctx:
            result = cli.invoke(ctx)
        if isinstance(result, PanelView) and not (session.as_json or result.once):
            return session.queue().panel(interval=result.interval)  # a widget, live on its own
        if isinstance(result, Result):
            return result.to_json() if session.as_json else present(result)
        return None
    except click.exceptions.Exit:  # --help, --version: already printed
        return None
    except KeyboardInterrupt:  # Ctrl-C / kernel interrupt, e.g. during `wait`
        raise UsageError(f"{PROG}: interrupted.") from None
    except click.exceptions.Abort:
        raise UsageError(f"{PROG}: aborted.") from None
    except click.ClickException as exc:
        message = exc.format_message()
        failed: click.Context | None = getattr(exc, "ctx", None)
        if failed is not None:
            message = f"{failed.get_usage()}\n{message}"
        raise UsageError(printable(message)) from None
    except QueuectlError as exc:
        raise UsageError(printable(error_message(exc, START_WORKERS))) from None


USE_HELP = f"""Usage: {PROG} use [PATH_OR_URL]

  Make PATH_OR_URL the queue of every later {PROG} line in this notebook (--db on a line
  still wins; QUEUECTL_DB and the default come after). Without an argument, show which queue
  the notebook uses. Notebook only."""


def _use(args: list[str], notebook: Notebook) -> Any:
    if args and args[0] in ("-h", "--help"):
        print(USE_HELP)
        return None
    if len(args) > 1 or (args and args[0].startswith("-")):
        raise UsageError(f"usage: {PROG} use [PATH_OR_URL] (quote a path with spaces).")
    if not args:
        current = resolve_location(notebook.default)
        print(f"This notebook uses {printable(redact(current))}.")
        return None
    try:
        location = notebook.use(args[0])
    except QueuectlError as exc:
        raise UsageError(printable(exc.message)) from None
    print(f"This notebook now uses {printable(location)}.")
    return None


@singledispatch
def present(result: Result) -> Any:
    """What a command's result looks like in a notebook (by default, its terminal text)."""
    shown = text(result, START_WORKERS)
    if shown:
        print(shown)
    return None


@present.register
def _(result: Enqueued) -> Any:
    ids = [job.id for job in result.jobs]
    return ids[0] if len(ids) == 1 else ids


@present.register
def _(result: JobList) -> Any:
    return frames.jobs_frame(frames.job_table(result.jobs))


@present.register
def _(result: JobDetail) -> Any:
    return frames.attempts_frame(
        frames.attempt_table(result.attempts, {result.job.id: result.job.command})
    )


@present.register
def _(result: StatusReport) -> Any:
    status = result.status
    return _Status(**{f.name: getattr(status, f.name) for f in dataclasses.fields(status)})


class _Status(QueueStatus):
    """A status as the magic shows it: with no pool, it says how to start one here."""

    def __str__(self) -> str:
        return status_text(self, START_WORKERS)


@present.register
def _(result: MetricsReport) -> Any:
    location = result.location or ""
    return frames.metrics_frame(result.metrics, location)


@present.register
def _(result: ConfigView) -> Any:
    values = result.values
    return next(iter(values.values())) if result.single else dict(values)


@present.register
def _(result: Logs) -> Any:
    for stream, data in ((sys.stdout, result.attempt.stdout), (sys.stderr, result.attempt.stderr)):
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
    return None


@present.register
def _(result: Following) -> Any:
    for update in result.updates:  # a kernel interrupt stops it, like any cell
        if isinstance(update, Chunk):
            stream = sys.stdout if update.stream == "stdout" else sys.stderr
            stream.write(update.data.decode("utf-8", "replace"))
            stream.flush()
    return None


@present.register
def _(result: SweepEnqueued) -> Any:
    return result.sweep


@present.register
def _(result: ResultTable) -> Any:
    return result.frame


@present.register
def _(result: Message) -> Any:
    print(result.text)
    return None


@magics_class
class QueuectlMagics(Magics):
    """The ``%queuectl`` line magic."""

    def __init__(self, shell: Any, notebook: Notebook) -> None:
        super().__init__(shell)
        self.notebook = notebook

    @no_var_expand  # "$HOME" and "{x}" belong to the shell command, not to Python
    @output_can_be_silenced
    @line_magic
    def queuectl(self, line: str) -> Any:
        """Run a queuectl command, e.g. ``%queuectl list --state dead``.

        Same commands as the ``queuectl`` CLI (``%queuectl --help``), plus ``%queuectl use
        PATH_OR_URL`` to pick this notebook's default queue (``%queuectl use --help``).
        """
        return run_line(line, self.notebook)


def load(ipython: Any) -> None:
    """Register ``%queuectl`` on ``ipython`` (called by ``%load_ext queuectl``)."""
    ipython.register_magics(QueuectlMagics(ipython, NOTEBOOK))


def unload(ipython: Any) -> None:
    """Remove ``%queuectl``, stop its panels and the pools it started, close its queues.

    Returns at once: jobs still running finish in the background and are recorded, then the
    pool threads end. The notebook's ``use`` choice is kept for a later load.
    """
    manager = ipython.magics_manager
    manager.registry.pop(QueuectlMagics.__name__, None)
    manager.magics["line"].pop("queuectl", None)
    if "queuectl.panel" in sys.modules:
        sys.modules["queuectl.panel"].stop_all()
    NOTEBOOK.close()
