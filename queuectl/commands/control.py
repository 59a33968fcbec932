"""Commands that control jobs and the queue: cancel, retry, edit, pause, resume, prune."""

from __future__ import annotations

from typing import Any

import click

from queuectl.commands.completion import finished_states
from queuectl.commands.group import Seconds, Session, cli, filter_options, json_option
from queuectl.commands.jobs import job_id_argument, job_ids_argument
from queuectl.commands.results import Cancelled, JobDetail, Message
from queuectl.errors import InvalidInput
from queuectl.model.job import FINISHED
from queuectl.model.parse import job_changes, parse_duration, validate_state
from queuectl.store.base import check_prunable


@cli.command()
@job_ids_argument(required=False)
@click.option("--all-pending", is_flag=True, help="Cancel every pending or failed job.")
@filter_options
@click.option(
    "--no-wait",
    "no_wait",
    is_flag=True,
    help="Do not wait for running jobs to stop; only ask their pools.",
)
@click.option(
    "--timeout",
    type=Seconds(min=0),
    help="Wait at most this long for running jobs to stop (default: a few seconds).",
)
@json_option
@click.pass_obj
def cancel(
    session: Session,
    job_ids: tuple[str, ...],
    all_pending: bool,
    group: str | None,
    tag: str | None,
    no_wait: bool,
    timeout: float | None,
) -> Cancelled:
    """Cancel jobs: pending or failed ones at once; running ones are stopped by their pool
    (SIGTERM to the job's process group, SIGKILL after a grace period), on any host.

    Named jobs: all or none (an unknown id, or a job that has finished already, changes
    nothing). --group or --tag: every unfinished job of it, running ones too (finished ones
    are left); with --all-pending, only its pending and failed jobs.

    A cancelled job is not retried; `queuectl retry ID` runs it again. A running job that
    finished before its pool could stop it stays completed, and this says so.
    """
    chosen = all_pending or group is not None or tag is not None
    if chosen == bool(job_ids):
        raise InvalidInput(
            "give the ids of the jobs to cancel, or --all-pending, --group or --tag (not both)."
        )
    states = session.queue().cancel(
        *job_ids,
        all_pending=all_pending,
        group=group,
        tag=tag,
        wait=not no_wait,
        timeout=timeout,
    )
    return Cancelled(states)


@cli.command()
@job_ids_argument(required=False)
@click.option("--failed", is_flag=True, help="Every dead or cancelled job (of --group/--tag).")
@filter_options
@json_option
@click.pass_obj
def retry(
    session: Session, job_ids: tuple[str, ...], failed: bool, group: str | None, tag: str | None
) -> Message:
    """Run finished jobs (completed, dead or cancelled) again: back to pending with attempts
    reset to 0; their history stays. Named jobs: all or none.

    --failed: every dead or cancelled job; --group or --tag narrow it (and alone mean
    --failed: completed jobs are rerun by id only).

    \b
    Examples:
      queuectl retry job1 job2
      queuectl retry --group lr-sweep --failed
    """
    if not job_ids and not (failed or group or tag):
        raise InvalidInput("give the ids of the jobs to run again, or --failed, --group, --tag.")
    jobs = session.queue().retry(*job_ids, failed=failed, group=group, tag=tag)
    ids = [job.id for job in jobs]
    text = "\n".join(f"{job_id}: moved back to pending" for job_id in ids)
    return Message(text or "No dead or cancelled jobs to run again.", {"retried": ids})


@cli.command()
@job_id_argument
@click.option("--command", help="The new shell command.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--run-at", help="Not before this ISO 8601 time.")
@click.option("--delay", help="Not before this long from now, e.g. 30s, 10m.")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--timeout", help="Kill the job after this long; 0 = none.")
@json_option
@click.pass_obj
def edit(session: Session, /, job_id: str, **changes: Any) -> JobDetail:
    """Change a pending or failed job. A job that a worker claimed meanwhile is not changed
    (exit 2, and this says so)."""
    given = {name: value for name, value in changes.items() if value is not None}
    if "timeout" in given:
        given["timeout"] = parse_duration(given["timeout"], "--timeout")
    validated = job_changes(given)  # refused before the queue is opened (which may create it)
    queue = session.queue()
    job = queue.edit(job_id, validated)
    return JobDetail(job, queue.attempt_records(job_id))


@cli.command()
@json_option
@click.pass_obj
def pause(session: Session) -> Message:
    """Pause the queue: no pool starts a job until `queuectl resume`; running jobs finish.
    The pause is kept in the queue, across pool restarts."""
    changed = session.queue().pause()
    text = (
        "Paused: no job starts until the queue is resumed; running jobs finish."
        if changed
        else "The queue was paused already."
    )
    return Message(text, {"paused": True, "changed": changed})


@cli.command()
@json_option
@click.pass_obj
def resume(session: Session) -> Message:
    """Let pools start jobs again after `queuectl pause`."""
    changed = session.queue().resume()
    text = "Resumed: pools start jobs again." if changed else "The queue was not paused."
    return Message(text, {"paused": False, "changed": changed})


@cli.command()
@click.option(
    "--older-than",
    required=True,
    help="Delete jobs that finished longer ago than this, e.g. 30d, 12h, 3600.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE[,STATE...]",
    shell_complete=finished_states,
    help="Only jobs in this state (repeatable, or comma-separated); "
    "default: completed, dead and cancelled.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@json_option
@click.pass_obj
def prune(session: Session, older_than: str, states: tuple[str, ...], dry_run: bool) -> Message:
    """Delete finished jobs and their attempts; never an unfinished job.

    The queue file of SQLite keeps its size and reuses the freed pages; `VACUUM` gives them
    back (see the README).
    """
    age = parse_duration(older_than, "--older-than")
    named = [name for value in states for name in value.split(",") if name.strip()]
    if states and not named:
        raise InvalidInput("--state names no state: give e.g. --state completed,dead.")
    chosen = {validate_state(name) for name in named} if named else set(FINISHED)
    check_prunable(chosen)  # refused before the queue is opened (which may create it)
    count = session.queue().prune(age, chosen, dry_run=dry_run)
    verb = "Would delete" if dry_run else "Deleted"
    return Message(
        f"{verb} {count} finished job(s).", {"deleted": 0 if dry_run else count, "matched": count}
    )
