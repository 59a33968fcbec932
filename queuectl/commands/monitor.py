"""Commands that watch a queue: wait for it to drain, and the live panel."""

from __future__ import annotations

import click

from queuectl.commands.group import Seconds, Session, cli, filter_options, json_option
from queuectl.commands.results import Message, PanelView
from queuectl.model import State

#: how many jobs (running ones first, then the newest), and of the dead ones, the panel shows
RECENT = 10


@cli.command()
@click.option(
    "--timeout",
    type=Seconds(min=0),
    metavar="SECONDS",
    help="Give up after this long (exit code 1). Default: wait as long as it takes.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar. Default: when stderr is a terminal, or in a notebook.",
)
@filter_options
@json_option
@click.pass_obj
def wait(
    session: Session,
    timeout: float | None,
    progress: bool | None,
    group: str | None,
    tag: str | None,
) -> Message:
    """Block until no job (of --group, with --tag) is blocked, pending, failed (awaiting a
    retry) or processing.

    Fails at once when jobs are unfinished and no worker pool of the queue is running.
    """
    queue = session.queue()
    queue.wait_or_raise(timeout, progress=progress, group=group, tag=tag)
    status = queue.status(group=group, tag=tag)
    counts = {state.value: n for state, n in status.counts.items()}
    return Message(
        f"All jobs finished: {counts['completed']} completed, {counts['dead']} dead"
        + (f", {counts['cancelled']} cancelled." if counts["cancelled"] else "."),
        counts,
    )


@cli.command()
@click.option(
    "--interval",
    type=Seconds(min=0.1, max=3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the panel refreshes.",
)
@click.option("--once", is_flag=True, help="Print the panel once and exit.")
@click.pass_obj
def panel(session: Session, interval: float, once: bool) -> PanelView:
    """A live view of the queue: counts, workers, recent jobs and the DLQ.

    In a terminal it redraws until Ctrl-C (once when the output is not a terminal); in a
    notebook it is an ipywidgets panel with a retry button for the DLQ.
    """
    queue = session.queue()

    def read() -> PanelView:
        shot = queue.snapshot(recent=RECENT, listed=RECENT)  # one moment: counts and rows agree
        recent, dead = shot.running_then_newest(RECENT), shot.dead
        dead_total = shot.status.counts[State.DEAD]
        return PanelView(shot.status, recent, dead, dead_total, interval, once, read)

    return read()
