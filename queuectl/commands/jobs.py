"""Commands about jobs: enqueue, list, show, logs."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import click

from queuectl.commands.completion import job_ids
from queuectl.commands.group import LIMIT, F, Session, cli, filter_options, json_option
from queuectl.commands.results import Enqueued, Following, JobDetail, JobList, Logs
from queuectl.errors import InvalidInput, NotFound
from queuectl.model import NewJob, State
from queuectl.model.params import parse_params_option, template
from queuectl.model.parse import new_job, parse_duration, parse_env_option, parse_job_json

STATE_CHOICE = click.Choice([s.value for s in State], case_sensitive=False)


@cli.command()
@click.argument("job", nargs=-1)
@click.option("--id", "job_id", help="Job id (default: a generated one).")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--priority", type=int, help="Higher runs first (default 0).")
@click.option("--run-at", help="Not before this ISO 8601 time, e.g. 2030-01-01T00:00:00Z.")
@click.option("--delay", help="Not before this long from now, e.g. 30s, 10m, 2h.")
@click.option("--timeout", help="Kill the job after this long (seconds, or 30s, 10m); 0 = none.")
@click.option(
    "--cwd",
    metavar="DIR",
    help="Run in this directory (default: the current one, where the job is enqueued).",
)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable for the job (repeatable), on top of the worker's environment.",
)
@click.option("--group", metavar="NAME", help="Put the job in this group (a sweep, a batch).")
@click.option("--tag", "tags", multiple=True, metavar="NAME", help="Tag the job (repeatable).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A param (repeatable): $QUEUECTL_PARAM_NAME, and {NAME} in the command.",
)
@click.option(
    "--after",
    "after",
    multiple=True,
    metavar="ID[,ID...]",
    help="Run after these jobs (repeatable); they must exist.",
)
@click.option(
    "--after-group", metavar="NAME", help="Run after every job of this group (as it is now)."
)
@click.option(
    "--after-ok/--after-any",
    "after_ok",
    default=None,
    help="Run only if every parent completed (the default; a parent that ends dead or "
    "cancelled cancels this job), or once every parent finished, however it ended.",
)
@click.option("--raw", is_flag=True, help="JOB is a command even if it starts with '{'.")
@click.option(
    "--file",
    "job_file",
    type=click.File("rb"),
    help="Enqueue every job of this file (- for stdin): one JSON object or command per line.",
)
@json_option
@click.pass_obj
def enqueue(
    session: Session,
    job: tuple[str, ...],
    job_id: str | None,
    max_retries: int | None,
    priority: int | None,
    run_at: str | None,
    delay: str | None,
    timeout: str | None,
    cwd: str | None,
    env: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    params: tuple[str, ...],
    after: tuple[str, ...],
    after_group: str | None,
    after_ok: bool | None,
    raw: bool,
    job_file: BinaryIO | None,
) -> Enqueued:
    """Add a job; print its id.

    JOB is a JSON object with the fields id, command, max_retries, priority, run_at (or delay),
    timeout, cwd, env (an object), group, tags (a list), params (an object), after (a list of
    ids), after_group, after_rule ("ok" or "any"), or a plain command string. Several words
    after -- form one shell command line.

    A job with --after or --after-group is blocked until its parents let it go: under
    --after-ok (the default) when every one completed; a parent that ends dead or cancelled
    cancels it (and its own dependents), and retrying that parent re-arms it. Under
    --after-any it runs once every parent finished, however.

    A job with params gets each as $QUEUECTL_PARAM_<NAME>, and {name} in its command is
    replaced by the value, shell-quoted; write literal braces as {{ and }} then. A command
    without params is never rewritten.

    The job runs in the directory it was enqueued from (or --cwd), with the worker's
    environment plus its --env variables; this shell's environment is not copied.

    With --file, every non-empty line is a job (JSON, or a command); all are enqueued in one
    transaction, or none if a line is invalid. The options then apply to every line.

    \b
    Examples:
      queuectl enqueue "echo hello"
      queuectl enqueue '{"id":"job1","command":"sleep 2","max_retries":3}'
      queuectl enqueue --id lr-0.1 --timeout 1h -- python train.py --lr 0.1
      queuectl enqueue --priority 5 --file jobs.jsonl
      queuectl enqueue --group nightly --param day=mon -- ./report.sh {day}
      queuectl enqueue --id report --after fetch,clean -- ./report.sh
      queuectl enqueue --after-group lr-sweep --after-any -- python aggregate.py
    """
    if (job_file is None) == (not job):
        raise InvalidInput("give one job, or --file with one job per line (not both).")
    if job_file is not None and job_id is not None:
        raise InvalidInput("--id names a single job: with --file, give ids in the lines.")
    options: dict[str, Any] = {
        "id": job_id,
        "max_retries": max_retries,
        "priority": priority,
        "run_at": run_at,
        "delay": delay,  # the store counts it from its own clock
        "timeout": None if timeout is None else parse_duration(timeout, "--timeout"),
        "cwd": cwd,
        "env": parse_env_option(env) if env else None,
        "group": group,
        "tags": list(tags) or None,
        "params": parse_params_option(params) if params else None,
        "after": [part.strip() for word in after for part in word.split(",") if part.strip()]
        or None,
        "after_group": after_group,
        "after_rule": None if after_ok is None else ("ok" if after_ok else "any"),
    }
    if delay is not None and run_at is not None:
        raise InvalidInput("give either --delay or --run-at, not both.")
    given = {name: value for name, value in options.items() if value is not None}
    flags = {name: _flag(name) for name in given}
    if job_file is None:
        fields = _job_fields(job, raw)
        if len(job) > 1 and "params" in given:  # placeholders in words: see params.template
            fields["command"] = template(job)
        jobs = [_new_job(fields, given, flags)]
    else:
        jobs = _read_jobs(job_file, raw, given, flags)
    # Validated above, before the queue (maybe a new file) is opened; the API takes them as is.
    return Enqueued(session.queue().submit(jobs))


def _read_jobs(
    lines: Iterable[bytes], raw: bool, given: dict[str, Any], flags: dict[str, str]
) -> list[NewJob]:
    """The jobs of a file (UTF-8), each validated; an error names its line."""
    jobs = []
    for number, data in enumerate(lines, start=1):
        try:
            line = data.decode("utf-8").removeprefix("\ufeff")
            if not line.strip():
                continue
            jobs.append(_new_job(_job_fields((line.rstrip("\r\n"),), raw), given, flags))
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"line {number} is not UTF-8 text (byte {data[exc.start]:#04x} at column "
                f"{exc.start + 1}): save the file as UTF-8."
            ) from None
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc.message}") from None
    if not jobs:
        raise InvalidInput("the file has no jobs: give one JSON object or command per line.")
    return jobs


def _new_job(fields: dict[str, Any], given: dict[str, Any], flags: dict[str, str]) -> NewJob:
    """The job's fields plus the options, validated; refused if a field comes both ways."""
    for name, value in given.items():
        if name in fields:
            raise InvalidInput(f"{name} is given both in the job JSON and as {flags[name]}.")
        fields[name] = value
    return new_job(fields)


def _job_fields(words: tuple[str, ...], raw: bool) -> dict[str, Any]:
    if len(words) > 1:
        return {"command": shlex.join(words)}
    # A byte order mark (an editor's, at the start of the file or pasted in) is no command.
    text = words[0].removeprefix("\ufeff")
    if not raw and text.lstrip().startswith("{"):
        return parse_job_json(text)
    return {"command": text}


def _flag(name: str) -> str:
    flags = {"tags": "--tag", "params": "--param", "after_rule": "--after-ok/--after-any"}
    return flags.get(name, "--" + name.replace("_", "-"))


@cli.command("list")
@click.option("--state", type=STATE_CHOICE, help="Only jobs in this state.")
@filter_options
@click.option("--search", metavar="TEXT", help="Only jobs whose id or command contains TEXT.")
@click.option(
    "--before", metavar="ID", help="Only jobs enqueued before job ID (the next page after it)."
)
@LIMIT
@json_option
@click.pass_obj
def list_jobs(
    session: Session,
    state: str | None,
    group: str | None,
    tag: str | None,
    search: str | None,
    before: str | None,
    limit: int,
) -> JobList:
    """List jobs, newest first.

    --search ignores the case of ASCII letters and reads jobs until it has --limit of them.
    """
    queue = session.queue()
    chosen = State(state.lower()) if state else None
    counts = queue.counts(group=group, tag=tag)
    total = counts[chosen] if chosen else sum(counts.values())
    jobs = queue.job_records(chosen, limit, group=group, tag=tag, before=before, search=search)
    return JobList(jobs, len(jobs) if search else total)


def existing_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse an id that is not text (bytes of the command line that are not UTF-8): no job
    has such an id, and the store cannot even look it up."""
    for job_id in (value,) if isinstance(value, str) else value:
        try:
            job_id.encode("utf-8")
        except UnicodeEncodeError:
            raise NotFound(f"no job with id {job_id!r}.") from None
    return value


def job_id_argument(command: F) -> F:
    """The ``ID`` argument of a command about one job (checked, completed from the queue)."""
    return click.argument("job_id", metavar="ID", callback=existing_ids, shell_complete=job_ids)(
        command
    )


def job_ids_argument(*, required: bool) -> Callable[[F], F]:
    """The ``ID...`` argument of a command about several jobs."""
    return click.argument(
        "job_ids",
        metavar="ID...",
        nargs=-1,
        required=required,
        callback=existing_ids,
        shell_complete=job_ids,
    )


@cli.command()
@job_id_argument
@json_option
@click.pass_obj
def show(session: Session, job_id: str) -> JobDetail:
    """Show one job with its attempts."""
    queue = session.queue()
    return JobDetail(queue.get(job_id), queue.attempt_records(job_id), queue.relatives(job_id))


@cli.command()
@job_id_argument
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    help="Attempt number (default: the latest). After a DLQ retry, the latest with that number.",
)
@click.option(
    "--safe",
    is_flag=True,
    help="Show control characters escaped (\\x1b) instead of sending them to the terminal.",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Print the latest attempt's output as it comes, until it ends; exit with its code.",
)
@json_option
@click.pass_obj
def logs(
    session: Session, job_id: str, attempt: int | None, safe: bool, follow: bool
) -> Logs | Following:
    """Print the captured output of a job's attempt: stdout to stdout, stderr to stderr.

    The bytes come out as the job wrote them, colours and all; on a terminal, a note on stderr
    says when they hold control sequences. --safe shows those escaped. Only the last
    output_max_bytes of each stream are kept.

    With --follow, a running attempt's output appears about once a second, from any host;
    a job that has not started is waited for. The exit code is then the attempt's.
    """
    if follow:
        if attempt is not None or session.as_json:
            raise InvalidInput(
                "--follow prints the latest attempt as it runs: without --attempt and --json."
            )
        return Following(session.queue().follow(job_id), safe=safe)
    attempts = session.queue().attempt_records(job_id)
    if attempt is not None:
        attempts = [a for a in attempts if a.number == attempt]
    if not attempts:
        which = f"no attempt {attempt}" if attempt is not None else "not run yet"
        raise NotFound(f"job '{job_id}' has {which}.")
    return Logs(attempts[-1], safe=safe)
