"""Commands for the dead letter queue: list, retry (alias: restore), move."""

from __future__ import annotations

import copy

import click

from queuectl.commands.group import LIMIT, Session, cli, filter_options, json_option
from queuectl.commands.jobs import job_ids_argument
from queuectl.commands.results import JobList, Message
from queuectl.errors import InvalidInput
from queuectl.model import State


@cli.group()
def dlq() -> None:
    """The dead letter queue: jobs that used up their retries."""


@dlq.command("list")
@LIMIT
@filter_options
@json_option
@click.pass_obj
def dlq_list(session: Session, limit: int, group: str | None, tag: str | None) -> JobList:
    """List dead jobs, newest first."""
    queue = session.queue()
    dead = queue.job_records(State.DEAD, limit, group=group, tag=tag)
    return JobList(dead, queue.counts(group=group, tag=tag)[State.DEAD], dlq=True)


@dlq.command("retry")
@job_ids_argument(required=False)
@click.option("--all", "all_dead", is_flag=True, help="Retry every dead job.")
@json_option
@click.pass_obj
def dlq_retry(session: Session, job_ids: tuple[str, ...], all_dead: bool) -> Message:
    """Move dead jobs back to pending with attempts reset to 0 (their history stays)."""
    if all_dead == bool(job_ids):
        raise InvalidInput("give the ids of dead jobs, or --all (not both).")
    jobs = session.queue().retry(*job_ids, all_dead=all_dead, dead_only=True)
    ids = [job.id for job in jobs]
    text = "\n".join(f"{job_id}: moved back to pending" for job_id in ids)
    return Message(text or "The dead letter queue is empty.", {"retried": ids})


@dlq.command("move")
@job_ids_argument(required=True)
@json_option
@click.pass_obj
def dlq_move(session: Session, job_ids: tuple[str, ...]) -> Message:
    """Move pending or failed jobs straight to the dead letter queue (all or none); `dlq
    retry` brings them back."""
    ids = [job.id for job in session.queue().move_to_dlq(*job_ids)]
    text = "\n".join(f"{job_id}: moved to the dead letter queue" for job_id in ids)
    return Message(text, {"moved": ids})


# `dlq restore` is what users of other queuectl tools type.
_restore = copy.copy(dlq_retry)
_restore.hidden = True
dlq.add_command(_restore, "restore")
