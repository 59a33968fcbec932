"""Shell completion of what the queue holds: job ids, config keys, state names.

click completes sub-commands and options itself (``_QUEUECTL_COMPLETE``; see the README for
bash, zsh and fish). These functions complete argument values. They never create a queue,
never print, and give nothing rather than an error: a completion that fails is no completion.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from queuectl.commands.group import Session
from queuectl.model import State
from queuectl.model.config import ALIASES, SETTINGS
from queuectl.store import resolve_location
from queuectl.text import printable

#: the newest jobs offered: a bounded read, however long the history
JOB_IDS_READ = 1000


def job_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The ids of the newest jobs that start with ``incomplete``, each with its state and
    the start of its command as help (zsh and fish show it)."""
    session = ctx.find_object(Session) or Session()
    with contextlib.suppress(Exception):
        location = resolve_location(session.db)
        if "://" not in location and "=" not in location and not Path(location).exists():
            return []  # completing must not create the queue
        from queuectl.api import connect

        with connect(location) as queue:
            jobs = queue.job_records(limit=JOB_IDS_READ)
        return [
            CompletionItem(
                job.id, help=f"{job.state} {printable(job.command, multiline=False)[:40]}"
            )
            for job in jobs
            if job.id.startswith(incomplete)
        ]
    return []


def config_keys(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The configuration keys and their aliases, with ``-`` as users type them."""
    names = [*SETTINGS, *ALIASES]
    typed = incomplete.replace("-", "_")
    return [
        CompletionItem(name.replace("_", "-"), help=SETTINGS[name].help if name in SETTINGS else "")
        for name in names
        if name.startswith(typed)
    ]


def finished_states(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The states of finished jobs (what ``prune --state`` takes), after any already typed."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [
        CompletionItem(prefix + state.value)
        for state in State
        if not state.active and state.value.startswith(last)
    ]
