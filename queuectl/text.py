"""Plain-text rendering shared by the terminal and by text reprs in notebooks. No click."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from queuectl.model import State

if TYPE_CHECKING:
    from queuectl.api import QueueStatus


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
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def status_text(status: QueueStatus, hint: str = "queuectl worker start --count 2") -> str:
    """Counts per state and the live pools, as ``queuectl status`` prints them."""
    counts = status.counts
    lines = [f"queue: {status.location}", ""]
    lines += [f"  {state.value:<11}{counts.get(state, 0):>8}" for state in State]
    lines += [f"  {'total':<11}{status.total:>8}", ""]
    if not status.workers:
        lines.append(f"No workers running. Start some with: {hint}")
        return "\n".join(lines)
    rows = [
        (
            w.id,
            w.host,
            w.pid,
            w.threads,
            w.started_at,
            w.heartbeat_at,
            "stopping" if w.stop_requested else "running",
        )
        for w in status.workers
    ]
    headers = ["worker", "host", "pid", "threads", "started", "heartbeat", "state"]
    lines.append(table(headers, rows))
    return "\n".join(lines)
