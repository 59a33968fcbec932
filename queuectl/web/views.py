"""How values look on the pages (Jinja2 filters). A job's text is shown as it is, with its
control characters escaped (``printable``), and autoescaped as HTML by the templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from queuectl.text import printable


def line(value: Any) -> str:
    """A value on one line: control characters, tabs and newlines escaped; none as "-"."""
    if value is None or value == "":
        return "-"
    return printable(str(value), multiline=False)


def tail(value: Any, width: int = 40) -> str:
    """A long value (a queue's location) by its end, where the file name is, from a whole
    folder name when that keeps enough of it: "…/demo/queue.db". On one line, as ``line``."""
    text = line(value)
    if len(text) <= width:
        return text
    kept = text[-(width - 1) :]
    # from the first "/" of a folder (not a URL's "//"), if enough is left after it
    lone = (i for i, c in enumerate(kept) if c == "/" and "/" not in kept[i - 1 : i + 2 : 2])
    cut = next(lone, -1)
    if cut > 0 and len(kept) - cut >= width // 3:
        kept = kept[cut:]
    return "…" + kept


def block(value: Any) -> str:
    """Text of several lines (output): control characters escaped, lines kept."""
    return printable(str(value or ""))


def when(value: str | None) -> str:
    """An ISO 8601 time of ``--json`` as a page shows it: to the second, in UTC."""
    return "-" if not value else value[:19].replace("T", " ")


def duration(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def attempt_view(attempt: dict[str, Any]) -> dict[str, Any]:
    """An attempt of ``show --json`` for the job's page."""
    return {**attempt, "running": attempt["finished_at"] is None}


def local_path(path: str) -> str:
    """``path`` if it is a path of this server ("/jobs?state=dead"), else "/": a form's
    ``next`` can never send the browser elsewhere."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


FILTERS: dict[str, Callable[..., str]] = {
    "line": line,
    "tail": tail,
    "block": block,
    "when": when,
    "duration": duration,
}
