"""Commands that run and stop worker pools."""

from __future__ import annotations

import functools

import click

from queuectl.commands.group import Seconds, Session, cli, json_option
from queuectl.commands.results import Message, worker_json
from queuectl.worker.inprocess import MAX_THREADS

COUNT = click.option(
    "--count",
    "-c",
    type=click.IntRange(1, MAX_THREADS),
    default=1,
    show_default=True,
    help="Worker threads in the pool.",
)
POLL = click.option(
    "--poll-interval",
    type=click.IntRange(1, 60_000),
    metavar="MS",
    help="Idle wait between claims, in milliseconds (default: the poll_interval config).",
)


@cli.group()
def worker() -> None:
    """Start, run and stop worker pools."""


@worker.command("start")
@COUNT
@POLL
@click.option("--foreground", is_flag=True, help="Run in this terminal (= worker run).")
@json_option
@click.pass_obj
def worker_start(
    session: Session, count: int, poll_interval: int | None, foreground: bool
) -> Message | None:
    """Start a detached background pool and return once it runs.

    Its log is in $QUEUECTL_HOME/logs. Jobs run in the current directory. In a notebook
    (%queuectl) the pool runs as threads of the kernel instead.
    """
    if foreground:
        ctx = click.get_current_context()
        ctx.invoke(worker_run, count=count, until_empty=False, poll_interval=poll_interval)
        return None
    if session.in_kernel:
        queue = session.queue()
        pool_id = queue.start_workers(
            count, poll_interval=None if poll_interval is None else poll_interval / 1000
        )
        # Registered before start_workers returns: the same record the CLI prints.
        pool = next(w for w in queue.workers() if w.id == pool_id)
        return Message(
            f"Started worker pool {pool_id} with {count} thread(s) in this kernel.",
            worker_json(pool),
        )
    info = session.queue().start_background_pool(count)
    return Message(
        f"Started worker pool {info.id} with {count} thread(s) (pid {info.pid}).",
        worker_json(info),
    )


@worker.command("run")
@COUNT
@click.option(
    "--until-empty", is_flag=True, help="Exit once no job is blocked, pending, failed or running."
)
@POLL
@click.pass_obj
def worker_run(session: Session, count: int, until_empty: bool, poll_interval: int | None) -> None:
    """Run a pool in the foreground until SIGTERM/SIGINT (a second one kills running jobs)."""
    run = functools.partial(
        session.queue().run_workers,
        count,
        until_empty=until_empty,
        poll_interval=None if poll_interval is None else poll_interval / 1000,
    )
    if session.in_kernel:  # worker threads must not print into cells: leave logging alone
        run()
        return None
    import logging  # here: other commands start faster without these

    from queuectl.logs import PrintableFormatter
    from queuectl.worker import subreaper, watchdog

    logger = logging.getLogger("queuectl")
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        # This process runs nothing but the pool: it adopts its jobs' orphans, so that those
        # that left their job's process group end with their attempt too. A killed pool cannot
        # kill its jobs: its watchdog does. (A notebook's kernel pools, run above, are no
        # subreapers; they find such processes by their marker and stop their jobs themselves
        # when the kernel exits.)
        with subreaper.adopt_orphans(), watchdog.guard_job_groups():
            run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    return None


@worker.command("stop")
@click.option("--wait", is_flag=True, help="Block until the pools have exited.")
@click.option("--timeout", type=Seconds(min=0), help="With --wait: give up after this.")
@json_option
@click.pass_obj
def worker_stop(session: Session, wait: bool, timeout: float | None) -> Message:
    """Stop every pool of this queue gracefully: running jobs finish and are recorded."""
    queue = session.queue()
    asked = queue.stop_workers(wait=wait, timeout=timeout)
    left = len(queue.workers()) if wait else asked
    if wait and left:
        text = f"Asked {asked} pool(s) to stop; {left} still running."
    elif wait:
        text = f"Stopped {asked} pool(s)."
    else:
        text = f"Asked {asked} pool(s) to stop; running jobs will finish first."
    return Message(text if asked else "No worker pools are running.", {"asked": asked})
