"""The command that moves a queue to another store."""

from __future__ import annotations

import click

from queuectl.commands.group import Session, cli, json_option
from queuectl.commands.results import Message
from queuectl.store import check_location


@cli.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="PATH|URL",
    help="The queue to copy into, e.g. postgresql://user@host/db. It must have no jobs.",
)
@json_option
@click.pass_obj
def migrate(session: Session, target: str) -> Message:
    """Copy this queue's jobs, attempts and configuration into another, empty queue.

    For moving an SQLite queue to PostgreSQL (or back). Stop the worker pools first. This
    queue is left as it was; point QUEUECTL_DB (or --db) at the new one afterwards.
    """
    from queuectl.migrate import copy_queue  # here: other commands start faster without it

    check_location(target)  # a bad --to is refused before this queue (maybe a new one) is opened
    moved = copy_queue(session.queue(), target)
    return Message(
        f"Copied {moved.jobs} job(s), {moved.attempts} attempt(s) and the configuration "
        f"from {moved.source} to {moved.target}.",
        {"jobs": moved.jobs, "attempts": moved.attempts, "from": moved.source, "to": moved.target},
    )
