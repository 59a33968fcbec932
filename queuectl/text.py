"""Plain-text rendering shared by the terminal and by text reprs in notebooks. No click.

At the bottom of the layers (beside ``errors``): it knows no queuectl type, so the model can
render itself with it (``model.status``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

#: What a terminal would act on rather than show: C0 controls (tab and newline are kept where
#: a text allows them), DEL, C1 controls (U+0080-U+009F: 8-bit CSI, OSC, ...), the bidirectional
#: overrides and isolates that reorder what is shown, and lone surrogates (bytes that were not
#: UTF-8). ESC is a C0 control: escaping it defuses every escape sequence at once.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_IN_TEXT = re.compile(f"[{_UNSAFE}]")
_UNSAFE_IN_LINE = re.compile(f"[{_UNSAFE}\t\n]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, multiline: bool = True) -> str:
    """``text`` safe to print on a terminal: control characters shown escaped (``\\x1b``).

    Every text view passes through here, so a job's command, error or a worker's host name can
    never move the cursor, retitle the window or hide part of a line. Tabs and newlines stay
    when ``multiline``. Idempotent: what it returns contains nothing it would escape.
    """
    pattern = _UNSAFE_IN_TEXT if multiline else _UNSAFE_IN_LINE
    return pattern.sub(_visible, text)


def has_controls(data: bytes) -> bool:
    """Whether raw output holds bytes a terminal acts on (other than tab, newline and CR)."""
    return _CONTROL_BYTES.search(data) is not None


#: C0 but tab, newline and CR; DEL; C1 as UTF-8 (a lone 8-bit byte is part of other UTF-8 text)
_CONTROL_BYTES = re.compile(b"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]|\\xc2[\\x80-\\x9f]")


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the millisecond."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = 60) -> str:
    """A plain aligned text table; cells are cut to ``width`` characters."""
    cells = [[cell(v, width) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [[h.upper() for h in headers], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def cell(value: Any, width: int = 60) -> str:
    """One value as table text: ``-`` for none, ISO times, cut to ``width`` characters."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        value = iso(value)
    text = printable(" ".join(str(value).split()), multiline=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def relative(moment: datetime, now: datetime) -> str:
    """``moment`` from ``now`` as people say it: "3 s ago", "in 5 min", "2 h ago"."""
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if span >= size:
            amount = f"{int(span // size)} {unit}"
            break
    else:
        amount = f"{int(span)} s"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"
