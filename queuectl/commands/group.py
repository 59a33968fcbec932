"""The click group every command hangs from, and the session it carries.

The console script and the notebook magic both run this group. Commands return ``Result``
objects; the console script prints them (``cli.py``), the magic hands them to the notebook.
"""

from __future__ import annotations

import math
import os
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


def filter_options(command: F) -> F:
    """Add ``--group NAME`` and ``--tag NAME``: only the jobs of that group, with that tag."""
    command = click.option("--tag", metavar="NAME", help="Only jobs with this tag.")(command)
    return click.option("--group", metavar="NAME", help="Only jobs of this group.")(command)


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


DB_HELP = (
    "The queue: a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB. "
    "Default: $QUEUECTL_DB, else $QUEUECTL_HOME/queue.db (QUEUECTL_HOME defaults to "
    "~/.queuectl). Before or after the sub-command."
)


def _choose_db(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    """Take ``--db`` wherever it was given, before the sub-command or after it; refuse two
    different queues (the same one twice is fine)."""
    if not values:
        return
    session = ctx.ensure_object(Session)
    given = [*([session.db] if session.db is not None else []), *values]
    if len({_same_queue(value) for value in given}) > 1:
        shown = " and ".join(repr(value) for value in dict.fromkeys(given))
        raise click.UsageError(f"--db names two queues ({shown}): give one.", ctx)
    session.db = values[0]


def _same_queue(location: str) -> str:
    """``location`` such that two spellings of one queue file compare equal."""
    if "://" in location or "=" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def db_option(command: F) -> F:
    """Add ``--db`` (repeatable only with one value) to a command or group."""
    return click.option(
        "--db",
        metavar="PATH|URL",
        multiple=True,
        expose_value=False,
        callback=_choose_db,
        help=DB_HELP,
    )(command)


def accept_db_everywhere(group: click.Group) -> None:
    """Give every sub-command and sub-group of ``group`` the ``--db`` option, as users of
    other queue tools type it after the sub-command (``queuectl status --db q.db``)."""
    for command in group.commands.values():
        if not any(param.name == "db" for param in command.params):
            db_option(command)
        if isinstance(command, click.Group):
            accept_db_everywhere(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@db_option
@click.version_option(__version__, "-V", "--version", prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """A persistent background job queue for shell commands.

    Enqueue commands, run worker pools, and inspect jobs, retries and the dead letter queue.
    """
    session = ctx.ensure_object(Session)
    ctx.call_on_close(session.close)
