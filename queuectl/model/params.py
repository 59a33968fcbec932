"""A job's parameters, the ``{name}`` placeholders of its command, and sweep grids.

Parameters are a JSON object of scalars. A worker gives each to the command as a variable
``QUEUECTL_PARAM_<NAME>`` (the name in upper case). A command that carries parameters may name
them as ``{name}`` placeholders, replaced *at enqueue* by the value, shell-quoted: the stored
command is the one that runs, and ``show`` prints it. A quoted value is one word only where a
word may start, so a placeholder inside quotes, after ``$`` or a backslash, or after a
here-document is refused (``$QUEUECTL_PARAM_<NAME>`` serves there); command-line words become
a command with ``template``, which keeps each word one word. Literal braces are written ``{{`` and
``}}``, as in ``str.format``; a placeholder may take a format spec (``{lr:.0e}``). A command
without parameters is never rewritten.
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

from queuectl.errors import InvalidInput
from queuectl.model.job import Scalar

#: a parameter name: it becomes part of a variable name and a column name
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
PARAM_ENV_PREFIX = "QUEUECTL_PARAM_"
MAX_PARAMS = 64
MAX_PARAM_TEXT = 4096
#: ``--param seed=0..3``: a range of whole numbers, both ends included
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


def validate_params(value: Any) -> dict[str, Scalar]:
    """Parameters: an object of names (letters, digits, ``_``) to text, numbers or booleans."""
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f'params must be an object of name: value, e.g. {{"lr": 0.01}}; got {_kind(value)}.'
        )
    if len(value) > MAX_PARAMS:
        raise InvalidInput(f"a job takes at most {MAX_PARAMS} params, got {len(value)}.")
    params: dict[str, Scalar] = {}
    upper: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            raise InvalidInput(
                f"invalid param name {name!r}: use letters, digits and _, not starting with a "
                "digit (it names a variable and a column)."
            )
        if (clash := upper.setdefault(name.upper(), name)) != name:
            raise InvalidInput(
                f"params {clash!r} and {name!r} would both be {PARAM_ENV_PREFIX}{name.upper()}."
            )
        params[name] = validate_scalar(name, raw)
    return params


def validate_scalar(name: str, value: Any) -> Scalar:
    """One parameter's value: text, a whole number, a finite number or a boolean."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # a numpy scalar, as a DataFrame's rows hold them
    if isinstance(value, bool | int | str):
        if isinstance(value, str) and ("\x00" in value or len(value) > MAX_PARAM_TEXT):
            raise InvalidInput(
                f"the value of param {name} must be text without NUL bytes, of at most "
                f"{MAX_PARAM_TEXT} characters."
            )
        if isinstance(value, str) and not _is_utf8(value):
            raise InvalidInput(f"the value of param {name} is not valid UTF-8 text.")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"the value of param {name} is {value}: give a finite number.")
        return value
    raise InvalidInput(
        f"the value of param {name} must be text, a number or a boolean, got {_kind(value)}."
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes of a command line that are not UTF-8
        return False
    return True


def param_text(value: Scalar) -> str:
    """A value as the command sees it: booleans as ``true``/``false``, numbers as Python
    writes them (``0.001``, ``1e-05``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_env(params: Mapping[str, Scalar]) -> dict[str, str]:
    """The variables a job's parameters become."""
    return {f"{PARAM_ENV_PREFIX}{name.upper()}": param_text(v) for name, v in params.items()}


def _parsed(text: str, what: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """``text`` as ``str.format`` reads it: (literal, placeholder, spec, conversion) pieces."""
    import string  # only for commands with params: plain commands stay light

    try:
        return list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidInput(
            f"cannot read the placeholders of {what}: {exc}. Write literal braces as {{{{ and }}}}."
        ) from None


def expand(command: str, params: Mapping[str, Scalar]) -> str:
    """``command`` with each ``{name}`` replaced by the shell-quoted value of that param."""
    out: list[str] = []
    shell = _ShellState()
    for literal, name, spec, conversion in _parsed(command, "the command"):
        out.append(literal)
        shell.read(literal)
        if name is None:
            continue
        if problem := shell.unsafe():
            raise InvalidInput(
                f"the placeholder {{{name}}} is {problem}: its value is shell-quoted already, "
                f"so it must stand as a word of its own (or use ${PARAM_ENV_PREFIX}"
                f"{name.upper()} there)."
            )
        if name not in params:
            known = ", ".join(params) or "none"
            hint = "" if name.isidentifier() else " Write literal braces as {{ and }}."
            raise InvalidInput(
                f"the command names the placeholder {{{name}}}, which is not a param "
                f"(params: {known}).{hint}"
            )
        if conversion:
            raise InvalidInput(f"placeholder {{{name}!{conversion}}}: conversions are not taken.")
        value = params[name]
        try:
            text = format(value, spec) if spec else param_text(value)
        except ValueError as exc:
            raise InvalidInput(f"placeholder {{{name}:{spec}}}: {exc}.") from None
        out.append(shlex.quote(text))
    return "".join(out)


class _ShellState:
    """Where the text read so far leaves the shell: inside quotes, after a backslash or ``$``,
    or in a here-document. A quoted value is one word only outside all of those."""

    def __init__(self) -> None:
        self.quote = ""  # "'" or '"' while inside such quotes
        self.escaped = False  # the last character was an unquoted backslash
        self.last = ""
        self.heredoc = False

    def read(self, text: str) -> None:
        for char in text:
            if self.escaped:
                self.escaped = False
            elif self.quote == "'":
                self.quote = "" if char == "'" else "'"
            elif char == "\\":
                self.escaped = True
            elif self.quote == '"':
                self.quote = "" if char == '"' else '"'
            elif char in "'\"":
                self.quote = char
            elif char == "<" and self.last == "<":
                self.heredoc = True
            self.last = char

    def unsafe(self) -> str | None:
        if self.quote:
            return "inside quotes"
        if self.escaped:
            return "right after a backslash"
        if self.last == "$":
            return "right after $"
        if self.heredoc:
            return "after a here-document (<<), whose text the shell expands"
        return None


def template(words: Sequence[str]) -> str:
    """Command-line words (after ``--``) as one command with placeholders: each word's text
    quoted as the shell split it, its ``{name}`` placeholders left to be replaced by quoted
    values, so that a word stays one word whatever the values hold."""
    parts = []
    for word in words:
        quoted = []
        text = ""  # literal text up to the next placeholder (braces come in pieces)
        for literal, name, spec, conversion in _parsed(word, repr(word)):
            text += literal
            if name is not None:
                quoted.append(_quoted_literal(text))
                text = ""
                mark = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                quoted.append(f"{{{name}{mark}}}")
        quoted.append(_quoted_literal(text))
        parts.append("".join(quoted) or "''")
    return " ".join(parts)


def _quoted_literal(text: str) -> str:
    """Literal text of a word, shell-quoted, with its braces doubled again for ``expand``."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}") if text else ""


def grid(
    axes: Mapping[str, Iterable[Any]], *, zipped: bool = False, limit: int
) -> list[dict[str, Any]]:
    """Parameter rows: every combination of the values of ``axes`` (in the order given, the
    last axis changing fastest), or with ``zipped`` the n-th value of each together. The values
    are checked with the job they go into (``parse.new_job``)."""
    if not axes:
        raise InvalidInput("a sweep needs at least one param, e.g. lr=[0.01, 0.1].")
    columns: dict[str, list[Any]] = {}
    sizes: dict[str, int] = {}
    for name, values in axes.items():
        if isinstance(values, Mapping):
            raise InvalidInput(
                f"param {name} takes a list of values, not {type(values).__name__} (a mapping)."
            )
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            values = [values]  # one value: a constant of the sweep
        # A range or list knows its size (a huge one is refused before it is read); a
        # generator is read no further than the limit.
        size = len(values) if isinstance(values, Sized) else None
        listed = (
            [] if size is not None and size > limit else list(itertools.islice(values, limit + 1))
        )
        sizes[name] = len(listed) if size is None else size
        if not sizes[name]:
            raise InvalidInput(f"param {name} has no values: give at least one.")
        columns[name] = listed
    if zipped:
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{n}: {k}" for n, k in sizes.items())
            raise InvalidInput(f"zipped params must have as many values each; got {shown}.")
        total = next(iter(sizes.values()))
    else:
        total = math.prod(sizes.values())
    check_size(total, limit)
    names = list(columns)
    combos: Iterable[Sequence[Any]] = (
        zip(*columns.values(), strict=True) if zipped else itertools.product(*columns.values())
    )
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def rows(records: Iterable[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Parameter rows given one by one (a DataFrame's records); the values are checked with
    the job they go into (``parse.new_job``)."""
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise InvalidInput(
            f"rows must be a DataFrame or a list of mappings, got {type(records).__name__}."
        )
    listed = list(itertools.islice(records, limit + 1))
    if not listed:
        raise InvalidInput("the sweep has no rows of params.")
    check_size(len(listed), limit)
    for row in listed:
        if not isinstance(row, Mapping):
            raise InvalidInput(
                f"each row of params must map names to values, e.g. {{'lr': 0.1}}; got {row!r}."
            )
    return [dict(row) for row in listed]


def check_size(size: int, limit: int) -> None:
    """Refuse a sweep of more than ``limit`` jobs (config ``max_sweep``), naming the fix."""
    if size > limit:
        raise InvalidInput(
            f"the sweep would enqueue {size:,} jobs, more than max_sweep ({limit:,}). Check the "
            "ranges, or raise the limit: queuectl config set max_sweep N."
        )


def parse_param_option(word: str) -> tuple[str, Sequence[Scalar]]:
    """``--param NAME=V1,V2,...`` or ``NAME=A..B`` (whole numbers, both ends included).
    Values read as whole numbers, then numbers, then ``true``/``false``, else text."""
    name, sep, text = word.partition("=")
    if not sep or not name:
        raise InvalidInput(f"--param {word!r}: write NAME=V1,V2,... or NAME=A..B (e.g. seed=0..3).")
    if match := _RANGE.fullmatch(text.strip()):
        low, high = int(match[1]), int(match[2])
        if high < low:
            raise InvalidInput(f"--param {word!r}: the range {low}..{high} is empty.")
        return name, range(low, high + 1)  # (not listed: its size is checked first)
    if not text:
        raise InvalidInput(f"param {name} has no values: give at least one.")
    return name, [_typed(part.strip()) for part in text.split(",")]


def parse_params_option(words: Iterable[str]) -> dict[str, Scalar]:
    """``--param NAME=VALUE`` words (repeatable) of one job, each value typed as
    ``parse_param_option`` types it; a name given twice is refused."""
    params: dict[str, Scalar] = {}
    for word in words:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--param {word!r}: write NAME=VALUE, e.g. --param lr=0.01.")
        if name in params:
            raise InvalidInput(f"--param sets {name} twice.")
        params[name] = _typed(text)
    return validate_params(params)


def _typed(text: str) -> Scalar:
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if isinstance(number, int) or math.isfinite(number):
            return number
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
