"""Validation of user input about jobs: job JSON, ids, commands, times and durations.

Everything here raises ``InvalidInput`` with a message that says what was wrong and how to fix
it, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from queuectl.errors import InvalidInput
from queuectl.model.config import did_you_mean
from queuectl.model.dependencies import validate_after, validate_rule
from queuectl.model.job import JobChanges, JobFilter, NewJob, State
from queuectl.model.params import expand, validate_params

JOB_FIELDS = (
    "id",
    "command",
    "max_retries",
    "priority",
    "run_at",
    "delay",
    "timeout",
    "cwd",
    "env",
    "group",
    "tags",
    "params",
    "after",
    "after_group",
    "after_rule",
)
#: the fields ``edit`` changes
EDITABLE = ("command", "max_retries", "priority", "run_at", "delay", "timeout")
FIELD_ALIASES = {"run_after": "run_at", "tag": "tags"}

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+@-]{0,127}")
MAX_TAGS = 32
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
#: the variables a worker sets for every job; a job cannot set them itself
RESERVED_ENV_PREFIX = "QUEUECTL_"
# Linux refuses a single argument longer than this (MAX_ARG_STRLEN), and `sh -c` needs one.
MAX_COMMAND_BYTES = 131_071
MAX_PRIORITY = 2**31 - 1
MAX_RETRIES = 1000
MAX_TIMEOUT = 30 * 86400
MAX_DELAY = 10 * 365 * 86400
#: the most rows a listing returns: more than any queue holds, within every store's integers
MAX_LIMIT = 1_000_000_000
#: the times every store keeps exactly and reads back (SQLite keeps epoch seconds as a double,
#: which rounds 9999-12-31T23:59:59.999999 up into the year 10000, beyond ``datetime``)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_job_json(text: str) -> dict[str, Any]:
    """Parse a job given as a JSON object; return its fields with aliases resolved."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"invalid job JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            'Expected an object such as {"command": "echo hi"}, or pass a plain command string.'
        ) from None
    except (ValueError, RecursionError) as exc:  # absurdly long numbers, deep nesting
        raise InvalidInput(f"invalid job JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"invalid job JSON: expected an object, got {type(data).__name__}. "
            'Example: {"id": "job1", "command": "echo hi"}.'
        )
    return canonical_fields(data)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (``json`` keeps the last of duplicates)."""
    data = dict(pairs)
    if len(data) < len(pairs):
        twice = next(key for n, (key, _) in enumerate(pairs) if key in dict(pairs[:n]))
        raise InvalidInput(f"invalid job JSON: field '{twice}' is given twice.")
    return data


def canonical_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map aliases (``run_after``) to field names; reject unknown fields with a suggestion."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        name = FIELD_ALIASES.get(key, key)
        if name not in JOB_FIELDS:
            known = [*JOB_FIELDS, *FIELD_ALIASES]
            suggestion = did_you_mean(str(key), known)
            raise InvalidInput(
                f"unknown job field '{key}'.{suggestion} Valid fields: {', '.join(JOB_FIELDS)}."
            )
        if name in result:
            raise InvalidInput(f"job field '{name}' is given twice (as '{key}' and '{name}').")
        result[name] = value
    return result


def new_job(fields: Mapping[str, Any]) -> NewJob:
    """Validate job fields (from JSON, options or keyword arguments) into a ``NewJob``."""
    data = canonical_fields(fields)
    if data.get("command") is None:
        raise InvalidInput('the job has no command. Example: {"command": "echo hi"}.')
    if data.get("run_at") is not None and data.get("delay") is not None:
        raise InvalidInput("give either run_at or delay, not both.")
    if data.get("after_rule") is not None and not (data.get("after") or data.get("after_group")):
        raise InvalidInput(
            "after_rule (--after-ok, --after-any) needs parents: give after (--after IDS) or "
            "after_group (--after-group NAME)."
        )
    params = validate_params(data.get("params") or {})
    command = validate_command(data["command"])
    return NewJob(
        command=validate_command(expand(command, params)) if params else command,
        id=None if data.get("id") is None else validate_id(data["id"]),
        max_retries=_optional_int(data, "max_retries", 0, MAX_RETRIES),
        priority=_optional_int(data, "priority", -MAX_PRIORITY, MAX_PRIORITY) or 0,
        run_at=None if data.get("run_at") is None else parse_time(data["run_at"], "run_at"),
        timeout=_optional_number(data, "timeout", 0, MAX_TIMEOUT),
        delay=None if data.get("delay") is None else parse_delay(data["delay"]),
        cwd=None if data.get("cwd") is None else validate_directory(data["cwd"]),
        env=validate_env(data.get("env") or {}),
        group=None if data.get("group") is None else validate_name(data["group"], "group"),
        tags=validate_tags(data.get("tags") or ()),
        params=params,
        after=() if data.get("after") is None else validate_after(data["after"]),
        after_group=(
            None
            if data.get("after_group") is None
            else validate_name(data["after_group"], "after_group")
        ),
        after_rule=validate_rule(data.get("after_rule") or "ok"),
    )


def job_changes(fields: Mapping[str, Any]) -> JobChanges:
    """Validate an ``edit`` (the fields of ``EDITABLE`` to change) into a ``JobChanges``."""
    data = {name: value for name, value in canonical_fields(fields).items() if value is not None}
    fixed = sorted(set(data) - set(EDITABLE))
    if fixed:
        raise InvalidInput(f"{', '.join(fixed)} cannot be edited; editable: {', '.join(EDITABLE)}.")
    if not data:
        raise InvalidInput(f"nothing to change: give at least one of {', '.join(EDITABLE)}.")
    # new_job validates every field the same way it does for a new job.
    job = new_job({"command": "true", **data})
    return JobChanges(
        command=job.command if "command" in data else None,
        max_retries=job.max_retries,
        priority=job.priority if "priority" in data else None,
        run_at=job.run_at,
        delay=job.delay,
        timeout=job.timeout,
    )


def validate_directory(value: Any) -> str:
    """A directory to run a job in: a non-empty path (checked on the worker's host, where
    the job runs)."""
    if not isinstance(value, str):
        raise InvalidInput(f"cwd must be a string (a directory), got {_type(value)}.")
    if not value.strip():
        raise InvalidInput("cwd is empty: give the directory the job should run in.")
    if "\x00" in value:
        raise InvalidInput("cwd contains a NUL byte, which a path cannot hold.")
    return value


def validate_env(value: Any) -> dict[str, str]:
    """Variables for a job: names of letters, digits and ``_`` (not starting with a digit,
    nor with ``QUEUECTL_``) and text values (numbers are written as text)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f'env must be an object of NAME: value, e.g. {{"LR": "0.1"}}; got {_type(value)}.'
        )
    env = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise InvalidInput(
                f"invalid variable name {name!r}: use letters, digits and _, "
                "not starting with a digit."
            )
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise InvalidInput(
                f"{name} is reserved: the worker sets the {RESERVED_ENV_PREFIX}* variables."
            )
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise InvalidInput(f"the value of {name} must be text or a number, got {_type(raw)}.")
        text = str(raw)
        if "\x00" in text:
            raise InvalidInput(f"the value of {name} contains a NUL byte.")
        env[name] = text
    return env


def parse_env_option(values: Iterable[str], name: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` words (``--env``, repeatable) as variables, validated; a name given
    twice is refused."""
    pairs: dict[str, str] = {}
    for word in values:
        key, sep, text = word.partition("=")
        if not sep:
            raise InvalidInput(f"{name} {word!r}: write KEY=VALUE, e.g. {name} LR=0.1.")
        if key in pairs:
            raise InvalidInput(f"{name} sets {key} twice.")
        pairs[key] = text
    return validate_env(pairs)


def validate_name(value: Any, what: str) -> str:
    """A group or tag name: spelt like a job id (1-128 letters, digits or ``_ . : = + @ -``)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise InvalidInput(
            f"invalid {what} {shown!r}: use 1-128 letters, digits or _ . : = + @ -, "
            "starting with a letter or digit."
        )
    return value


def job_filter(group: Any = None, tag: Any = None) -> JobFilter:
    """The jobs of ``group`` carrying ``tag`` (either may be ``None``: any), validated."""
    return JobFilter(
        None if group is None else validate_name(group, "group"),
        None if tag is None else validate_name(tag, "tag"),
    )


def validate_tags(value: Any) -> tuple[str, ...]:
    """Tags: one name or a list of names; repeats are kept once, in the order given."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise InvalidInput(f'tags must be a list of names, e.g. ["nightly"]; got {_type(value)}.')
    tags = tuple(dict.fromkeys(validate_name(name, "tag") for name in names))
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"a job takes at most {MAX_TAGS} tags, got {len(tags)}.")
    return tags


def validate_id(value: Any) -> str:
    """A job id: 1-128 letters, digits or ``_ . : = + @ -``, starting with a letter or digit."""
    if not isinstance(value, str):
        raise InvalidInput(f"job id must be a string, got {_type(value)}.")
    if not ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidInput(
            f"invalid job id {shown!r}: use 1-128 letters, digits or _ . : = + @ -, "
            "starting with a letter or digit."
        )
    return value


def validate_command(value: Any) -> str:
    """A shell command: a non-empty string without NUL bytes that ``sh -c`` can take."""
    if not isinstance(value, str):
        raise InvalidInput(f"command must be a string, got {_type(value)}.")
    if not value.strip():
        raise InvalidInput("command is empty: give the shell command the job should run.")
    if "\x00" in value:
        raise InvalidInput("command contains a NUL byte, which a shell command cannot hold.")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # bytes from the command line that are not UTF-8
        raise InvalidInput(
            "command is not valid UTF-8 text: write the bytes it needs with printf escapes "
            "(e.g. printf '\\377'), or keep them in a script file."
        ) from None
    if size > MAX_COMMAND_BYTES:
        raise InvalidInput(
            f"command is {size} bytes; the limit is {MAX_COMMAND_BYTES}. "
            "Put long scripts in a file and run the file."
        )
    return value


def validate_state(value: str) -> State:
    """A state name, e.g. ``pending`` or ``dead``."""
    try:
        return State(value.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise InvalidInput(f"unknown state '{value}'. Valid states: {names}.") from None


def parse_time(value: Any, name: str = "time") -> datetime:
    """An ISO 8601 time (``2030-01-01T00:00:00Z``); one without an offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(
                f"invalid {name} {value!r}: expected an ISO 8601 time such as 2030-01-01T00:00:00Z."
            ) from None
    else:
        raise InvalidInput(f"{name} must be an ISO 8601 string, got {_type(value)}.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = EARLIEST - timedelta(days=1)  # refused just below, with the range
    if not EARLIEST <= moment <= LATEST:
        raise InvalidInput(
            f"{name} {value!s} is out of range: give a time between {EARLIEST.date()} and "
            f"{LATEST.date()}."
        )
    return moment


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from a number or a string such as ``90``, ``1.5s``, ``500ms``, ``10m``, ``2h``."""
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number of seconds, got a boolean.")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match["number"]) * _UNITS[match["unit"]]
    else:
        raise InvalidInput(
            f"invalid {name} {value!r}: give seconds, or a number with ms, s, m, h or d "
            "(e.g. 30s, 10m)."
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"invalid {name} {value!r}: must be zero or more seconds.")
    return seconds


def validate_limit(value: Any) -> int | None:
    """How many rows to show: None (all), or a whole number from 1 to ``MAX_LIMIT``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {value!r}.")
    return value


def validate_timeout(value: Any, name: str = "timeout") -> float | None:
    """A wait's timeout: None (no limit), or zero or more seconds (never ``nan`` or ``inf``)."""
    return None if value is None else parse_duration(value, name)


def parse_delay(value: Any) -> float:
    """How long a job waits before it may run: a duration (``10m``, seconds, a ``timedelta``)
    of at most ten years."""
    seconds = parse_duration(
        value.total_seconds() if isinstance(value, timedelta) else value, "delay"
    )
    if seconds > MAX_DELAY:
        raise InvalidInput(f"delay {value!r} is more than ten years.")
    return seconds


def _optional_int(data: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number, got {_type(value)}.")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}.")
    return value


def _optional_number(data: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number of seconds, got {_type(value)}.")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g} seconds, got {value}.")
    return float(value)


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {json.dumps(value, default=str)[:40]}"
