"""Commands for parameter sweeps: enqueue a grid of jobs, and read their results."""

from __future__ import annotations

from typing import Any

import click

from queuectl.commands.group import Session, cli, filter_options, json_option
from queuectl.commands.results import ResultTable, SweepEnqueued
from queuectl.errors import InvalidInput
from queuectl.model.params import parse_param_option, template
from queuectl.model.parse import parse_duration, parse_env_option


@cli.command()
@click.argument("command", nargs=-1, required=True)
@click.option(
    "--param",
    "params",
    multiple=True,
    required=True,
    metavar="NAME=V1,V2|A..B",
    help="A param and its values (repeatable): lr=0.001,0.01 or seed=0..3 (ends included).",
)
@click.option(
    "--zip", "zipped", is_flag=True, help="Pair the n-th values instead of every combination."
)
@click.option("--group", metavar="NAME", help="The sweep's group (default: a generated name).")
@click.option("--tag", "tags", multiple=True, metavar="NAME", help="Tag every job (repeatable).")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--priority", type=int, help="Higher runs first (default 0).")
@click.option("--timeout", help="Kill a job after this long (seconds, or 30s, 10m); 0 = none.")
@click.option("--cwd", metavar="DIR", help="Run in this directory (default: the current one).")
@click.option(
    "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable (repeatable)."
)
@click.option(
    "--then",
    metavar="COMMAND",
    help="A job to run once every job of the grid completed (an aggregation), in the group.",
)
@json_option
@click.pass_obj
def sweep(
    session: Session,
    command: tuple[str, ...],
    params: tuple[str, ...],
    zipped: bool,
    group: str | None,
    tags: tuple[str, ...],
    max_retries: int | None,
    priority: int | None,
    timeout: str | None,
    cwd: str | None,
    env: tuple[str, ...],
    then: str | None,
) -> SweepEnqueued:
    """Enqueue one job per combination of the params' values, in one transaction.

    Each job runs COMMAND with {name} replaced by its value (shell-quoted: a placeholder is a
    word of its own, never inside quotes) and $QUEUECTL_PARAM_<NAME> set; write literal
    braces as {{ and }}. Words after -- stay words, whatever the values hold. A job may write a JSON
    object to $QUEUECTL_RESULT: `queuectl results --group G` shows it next to the params.
    More jobs than the config key max_sweep is an error, and nothing is enqueued.

    \b
    Examples:
      queuectl sweep --param lr=0.001,0.01,0.1 --param seed=0..3 --group lr-sweep \\
          -- python train.py --lr {lr} --seed {seed}
      queuectl sweep --zip --param a=1,2 --param b=x,y -- ./run.sh {a} {b}
      queuectl sweep --param seed=0..9 --then "python aggregate.py" -- ./run.sh {seed}
    """
    axes: dict[str, Any] = {}
    for word in params:
        name, values = parse_param_option(word)
        if name in axes:
            raise InvalidInput(f"--param {name} is given twice: list all its values in one.")
        axes[name] = values
    fields: dict[str, Any] = {
        "max_retries": max_retries,
        "priority": priority,
        "timeout": None if timeout is None else parse_duration(timeout, "--timeout"),
        "cwd": cwd,
        "env": parse_env_option(env) if env else None,
        "tags": list(tags) or None,
    }
    given = {name: value for name, value in fields.items() if value is not None}
    line = command[0] if len(command) == 1 else template(command)
    handle = session.queue().sweep(
        line, group=group, zipped=zipped, params=axes, then=then, **given
    )
    return SweepEnqueued(handle)


@cli.command()
@filter_options
@json_option
@click.pass_obj
def results(session: Session, group: str | None, tag: str | None) -> ResultTable:
    """One row per job: its params, state, attempts and the duration of its latest attempt,
    then the keys of the JSON object it wrote to $QUEUECTL_RESULT (nested keys joined by
    "."). Jobs without a result yet show "-" (null in --json)."""
    return ResultTable(session.queue().results(group=group, tag=tag))
