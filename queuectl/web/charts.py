"""The charts, drawn here as SVG: throughput over the last hour, and the runtime histogram
with its percentiles (of the recent attempts ``live`` reads). Only numbers and fixed labels
go in: no job's text."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from queuectl.store.base import AttemptHistory

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 30
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _svg(body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}" '
        'font-family="system-ui, sans-serif" font-size="11" fill="#57606a">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _axis(top: float, unit: str) -> list[str]:
    """The frame of a plot: its base line and the y axis' top and zero labels."""
    base = TOP + PLOT_H
    return [
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#d0d7de"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" stroke="#eaeef2" '
        'stroke-dasharray="3 3"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{_number(top)}</text>',
        f'<text x="{LEFT - 6}" y="{base}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{TOP + PLOT_H / 2 + 4}" text-anchor="end">{escape(unit)}</text>',
    ]


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def throughput(history: AttemptHistory | None, buckets: int) -> str:
    """Attempts finished per minute over the last ``buckets`` minutes: completed ones in
    green, the others (failed, timed out, lost, cancelled) in red above them."""
    label = "Attempts finished per minute, last hour"
    recent = history.recent if history else {}
    counts = [recent.get(i, {}) for i in range(buckets)]
    done = [c.get("completed", 0) for c in counts]
    other = [sum(c.values()) - d for c, d in zip(counts, done, strict=True)]
    top = max([d + o for d, o in zip(done, other, strict=True)] + [1])
    body = _axis(top, "/min")
    step = PLOT_W / buckets
    for i, (ok, bad) in enumerate(zip(done, other, strict=True)):
        x = LEFT + i * step + 0.5
        y: float = TOP + PLOT_H
        for n, colour in ((ok, "#2da44e"), (bad, "#cf222e")):
            if n:
                h = PLOT_H * n / top
                y -= h
                body.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"><title>{n}</title></rect>'
                )
    base = TOP + PLOT_H + 16
    body.append(f'<text x="{LEFT}" y="{base}">-{buckets - 1} min</text>')
    body.append(f'<text x="{WIDTH - RIGHT}" y="{base}" text-anchor="end">now</text>')
    if history is None or (not any(done) and not any(other)):
        body.append(
            _middle(NOT_READ if history is None else "no attempt finished in the last hour")
        )
    return _svg(body, label)


#: what a chart says before the first reading of the attempt history came
NOT_READ = "reading the attempt history…"


def _middle(text: str) -> str:
    return (
        f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H / 2}" text-anchor="middle">'
        f"{escape(text)}</text>"
    )


def percentile(counts: Sequence[int], bounds: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of a histogram, interpolated within its bucket (as Prometheus'
    ``histogram_quantile``); the last bound when it falls beyond it; None when empty."""
    total = sum(counts)
    if not total:
        return None
    wanted, seen = q * total, 0
    for i, n in enumerate(counts):
        if seen + n >= wanted and n:
            if i == len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (wanted - seen) / n
        seen += n
    return bounds[-1]


def seconds(value: float) -> str:
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def runtimes(history: AttemptHistory | None, bounds: Sequence[float]) -> str:
    """How long the completed attempts among the newest ran: one bar per bucket, with p50
    and p95 and how many runs they are of."""
    label = "Runtimes of recent completed attempts"
    counts = history.runtimes if history else [0] * (len(bounds) + 1)
    top = max([*counts, 1])
    body = _axis(top, "runs")
    step = PLOT_W / len(counts)
    for i, n in enumerate(counts):
        x = LEFT + i * step
        h = PLOT_H * n / top
        name = f"≤ {seconds(bounds[i])}" if i < len(bounds) else f"> {seconds(bounds[-1])}"
        body.append(
            f'<rect x="{x + 3:.1f}" y="{TOP + PLOT_H - h:.1f}" width="{step - 6:.1f}" '
            f'height="{h:.1f}" fill="#0969da"><title>{escape(name)}: {n}</title></rect>'
        )
        body.append(
            f'<text x="{x + step / 2:.1f}" y="{TOP + PLOT_H + 16}" text-anchor="middle">'
            f"{escape(name)}</text>"
        )
    marks = []
    for q in (0.5, 0.95):
        value = percentile(counts, bounds, q)
        if value is not None:
            marks.append(f"p{int(q * 100)} ≈ {seconds(round(value, 2))}")
    if marks:
        runs = sum(counts)
        marks.append(f"{runs:,} run{'s' if runs > 1 else ''}")
    text = " · ".join(marks) or ("" if history is None else "no completed attempt yet")
    if history is None:
        body.append(_middle(NOT_READ))
    body.append(
        f'<text x="{WIDTH - RIGHT}" y="{TOP + 4}" text-anchor="end" fill="#24292f">'
        f"{escape(text)}</text>"
    )
    return _svg(body, label)
