"""The click group every command hangs from, and the session it carries.

The console script and the notebook magic both run this group. Commands return ``Result``
objects; the console script prints them (``cli.py``), the magic hands them to the notebook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from queuectl import __version__
from queuectl.api import Queue, connect
from queuectl.model.parse import MAX_LIMIT

F = TypeVar("F", bound=Callable[..., Any])


class Seconds(click.FloatRange):
    """A number of seconds within a range; ``nan`` and ``inf`` are refused (click's
    ``FloatRange`` lets ``nan`` through, since every comparison with it is false)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return seconds


LIMIT = click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True)


@dataclass
class Session:
    """What a command run needs: which queue, opened on first use, and the output format.

    The console script opens the queue for one command and closes it after. The notebook
    magic passes ``opener``, which hands out queues that stay open across cells (in-kernel
    pools live on them), and sets ``in_kernel``: ``worker start`` then runs threads of the
    kernel instead of a detached process.
    """

    db: str | None = None
    as_json: bool = False
    in_kernel: bool = False
    opener: Callable[[str | None], Queue] | None = field(default=None, repr=False)
    _queue: Queue | None = field(default=None, repr=False)

    def queue(self) -> Queue:
        """The queue named by ``--db``, ``QUEUECTL_DB`` or the default, opened once."""
        if self._queue is None:
            self._queue = (self.opener or connect)(self.db)
        return self._queue

    def close(self) -> None:
        if self._queue is not None and self.opener is None:
            self._queue.close()
        self._queue = None


def json_option(command: F) -> F:
    """Add ``--json``: print the result as JSON only."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        help="Print JSON only (timestamps ISO 8601 UTC).",
        callback=_set_json,
    )(command)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Session).as_json = True


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    metavar="PATH|URL",
    help="The queue: a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB. "
    "Default: $QUEUECTL_DB, else $QUEUECTL_HOME/queue.db (QUEUECTL_HOME defaults to "
    "~/.queuectl).",
)
@click.version_option(__version__, "-V", "--version", prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A persistent background job queue for shell commands.

    Enqueue commands, run worker pools, and inspect jobs, retries and the dead letter queue.
    """
    session = ctx.ensure_object(Session)
    if db is not None:
        session.db = db
    ctx.call_on_close(session.close)
