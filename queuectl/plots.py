"""Plots of a queue's attempt history (the frame ``Queue.attempts()`` returns): when each
attempt ran, on which worker, and how long the attempts of each group took.

matplotlib is an optional extra (``pip install 'queuectl[plot]'``), imported only inside the
functions: ``import queuectl`` and the CLI never load it. Each function draws on the given
Axes, or on a new figure, and returns the Axes for the caller to adjust (``ax.figure`` is the
figure; titles are the caller's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol

from queuectl.errors import InvalidInput, MissingDependency
from queuectl.model import Outcome

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: Fixed colours, so that an outcome looks the same in every plot.
OUTCOME_COLORS: Final[dict[str, str]] = {
    Outcome.COMPLETED: "tab:green",
    Outcome.FAILED: "tab:red",
    Outcome.TIMEOUT: "tab:orange",
    Outcome.LOST: "tab:purple",
    Outcome.CANCELLED: "tab:gray",
}
RUNNING: Final = "running"
RUNNING_COLOR: Final = "tab:blue"

#: (longest span, seconds per unit, unit) of the timeline's x axis
_UNITS: Final = (
    (180.0, 1.0, "seconds"),
    (3 * 3600.0, 60.0, "minutes"),
    (float("inf"), 3600.0, "hours"),
)


def timeline(
    attempts: pd.DataFrame, *, ax: Axes | None = None, now: datetime | None = None
) -> Axes:
    """A Gantt chart of the attempts: one bar per attempt, one row per worker thread.

    Bars are coloured by outcome and show their job id where it fits; running attempts (no
    ``finished_at``) reach ``now`` and are hatched. ``now`` defaults to the current time, or
    to the latest time in the frame if that is later (a store's clock ahead of this one).

    Rows ("lanes"): the history records the worker *pool* of an attempt, not which of its
    threads ran it. So the lanes of a pool are derived: attempts in start order, each in the
    first lane of its pool that is free when it starts (greedy interval partitioning). That
    gives as many lanes as the pool ran attempts at once at most, never more than its threads,
    though a lane need not be one same thread throughout. Lanes read ``host:pid:tag #1``.

    The x axis is time since the first start, in seconds, minutes or hours by the span (short
    queues read better as durations than as clock times); the label names the first start.
    """
    import numpy as np
    import pandas as pd

    if attempts.empty:
        return _nothing(_axes(ax, width=9.0, height=2.0), "no attempts yet")
    frame = attempts.sort_values("started_at", kind="stable")
    first = frame["started_at"].min()
    end = pd.Timestamp(now if now is not None else datetime.now(UTC))
    if end.tzinfo is None:
        raise InvalidInput("now must be a timezone-aware datetime (e.g. datetime.now(UTC)).")
    if now is None:
        end = max(end, pd.concat([frame["started_at"], frame["finished_at"]]).max())
    running = frame["finished_at"].isna().to_numpy()
    starts = (frame["started_at"] - first).dt.total_seconds().to_numpy(dtype=float)
    finishes = (frame["finished_at"].fillna(end) - first).dt.total_seconds()
    finishes = np.maximum(finishes.to_numpy(dtype=float), starts)
    span = max(float(finishes.max()), 1e-3)
    scale, unit = next((scale, unit) for most, scale, unit in _UNITS if span <= most)
    pools = frame["worker_id"].astype(str).tolist()
    rows, labels = _lanes(pools, starts.tolist(), finishes.tolist())
    ax = _axes(ax, width=9.0, height=max(2.2, 0.35 * len(labels) + 1.2))
    # A bar narrower than a pixel would vanish: a blink-long attempt still shows.
    widths = np.maximum(finishes - starts, span / 400) / scale
    outcomes = frame["outcome"].astype(object).to_numpy()
    jobs = frame["job_id"].astype(str).to_numpy()
    for outcome in [*Outcome, RUNNING]:
        chosen = running if outcome == RUNNING else (outcomes == outcome) & ~running
        if not chosen.any():
            continue
        color = RUNNING_COLOR if outcome == RUNNING else OUTCOME_COLORS[outcome]
        bars = ax.barh(
            np.asarray(rows)[chosen],
            widths[chosen],
            left=starts[chosen] / scale,
            height=0.75,
            color="white" if outcome == RUNNING else color,
            # White edges part back-to-back attempts of one lane; a hatch takes the edge colour.
            edgecolor=color if outcome == RUNNING else "white",
            hatch="///" if outcome == RUNNING else None,
            linewidth=1.0,
            label=str(outcome),
        )
        for bar, job in zip(bars.patches, jobs[chosen], strict=True):
            if bar.get_width() * scale >= span / 14:  # only where the id can fit
                x, y = bar.get_x() + 0.01 * span / scale, bar.get_y() + bar.get_height() / 2
                tint = "0.15" if outcome == RUNNING else "white"
                text = ax.text(x, y, job, va="center", fontsize=7.5, color=tint)
                text.set_clip_path(bar)  # an id longer than its bar is cut at the bar's end
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # the first lane at the top
    ax.set_xlim(0, span * 1.02 / scale)
    ax.set_xlabel(f"{unit} since the first start ({first:%Y-%m-%d %H:%M:%S} UTC)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="outcome")
    return ax


def runtimes(attempts: pd.DataFrame, *, by: str = "outcome", ax: Axes | None = None) -> Axes:
    """Durations of the finished attempts per value of the column ``by``: a box per group
    with every attempt as a point over it, labelled with the group's size ("completed (n=12)").

    ``by`` is any column of the frame: ``outcome``, ``worker_id``, ``job_id``, a parameter
    column added by the caller. Groups follow a Categorical's order, else sorted values.
    """
    import numpy as np

    if by not in attempts.columns:
        columns = ", ".join(str(c) for c in attempts.columns)
        raise InvalidInput(f"cannot group the attempts by {by!r}: no such column ({columns}).")
    ax = _axes(ax, width=7.0, height=4.0)
    finished = attempts[attempts["duration"].notna()]
    if finished.empty:
        return _nothing(ax, "no attempts yet" if attempts.empty else "no finished attempts yet")
    groups = [
        (key, group["duration"].to_numpy(dtype=float))
        for key, group in finished.groupby(by, observed=True, sort=True, dropna=False)
    ]
    positions = list(range(1, len(groups) + 1))
    boxes = ax.boxplot(
        [values for _, values in groups],
        positions=positions,
        widths=0.55,
        patch_artist=True,
        showfliers=False,  # every point is drawn below: outliers too
        medianprops={"color": "black"},
    )
    for (key, _), box in zip(groups, boxes["boxes"], strict=True):
        box.set_facecolor(OUTCOME_COLORS.get(str(key), RUNNING_COLOR))
        box.set_alpha(0.35)
    jitter = np.random.default_rng(0)  # seeded: the same frame draws the same picture
    for position, (_, values) in zip(positions, groups, strict=True):
        offsets = jitter.uniform(-0.15, 0.15, len(values))
        ax.scatter(position + offsets, values, s=14, color="0.15", alpha=0.7, zorder=3)
    labels = [f"{key} (n={len(values)})" for key, values in groups]
    ax.set_xticks(positions, labels=labels)
    if max(len(label) for label in labels) * len(labels) > 60:
        # Long labels (worker ids) would run into each other side by side.
        ax.tick_params(axis="x", labelrotation=25)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    ax.set_xlabel(by)
    ax.set_ylabel("duration (s)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


def _lanes(
    pools: list[str], starts: list[float], finishes: list[float]
) -> tuple[list[int], list[str]]:
    """The row of each attempt (given in start order) and the labels of the rows, pools in
    order of their first start, lanes of a pool together."""
    ends: dict[str, list[float]] = {}  # per pool, when each of its lanes is free again
    placed: list[tuple[str, int]] = []
    for pool, start, finish in zip(pools, starts, finishes, strict=True):
        free = ends.setdefault(pool, [])
        lane = next((i for i, end in enumerate(free) if end <= start), len(free))
        if lane == len(free):
            free.append(finish)
        else:
            free[lane] = finish
        placed.append((pool, lane))
    first_row: dict[str, int] = {}
    labels: list[str] = []
    for pool, free in ends.items():
        first_row[pool] = len(labels)
        labels += [f"{pool} #{i + 1}" for i in range(len(free))]
    return [first_row[pool] + lane for pool, lane in placed], labels


def _axes(ax: Axes | None, *, width: float, height: float) -> Axes:
    """The caller's Axes, or one on a new pyplot figure (so that notebooks show it)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency(
            f"plots need matplotlib, which could not be imported ({exc}). "
            "Install it with: pip install 'queuectl[plot]'"
        ) from None
    if ax is not None:
        return ax
    return plt.subplots(figsize=(width, height), layout="constrained")[1]


def _nothing(ax: Axes, text: str) -> Axes:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


class History(Protocol):
    """What the plots read of a queue (``Queue`` has it)."""

    def attempts(
        self, job_id: str | None = None, *, group: str | None = None, tag: str | None = None
    ) -> pd.DataFrame: ...

    def results(self, *, group: str | None = None, tag: str | None = None) -> pd.DataFrame: ...


class QueuePlots:
    """``Queue.plot``: the plots above, of one queue's history (of a group or tag)."""

    def __init__(self, queue: History) -> None:
        self._queue = queue

    def timeline(
        self,
        *,
        group: str | None = None,
        tag: str | None = None,
        ax: Axes | None = None,
        now: datetime | None = None,
    ) -> Axes:
        """``timeline`` of the attempts of the queue (or of ``group``, ``tag``)."""
        return timeline(self._queue.attempts(group=group, tag=tag), ax=ax, now=now)

    def runtimes(
        self,
        by: str = "outcome",
        *,
        group: str | None = None,
        tag: str | None = None,
        ax: Axes | None = None,
    ) -> Axes:
        """``runtimes`` of the attempts, by a column of the history or by a param (``lr``):
        the jobs' params are joined to their attempts for that."""
        attempts = self._queue.attempts(group=group, tag=tag)
        if by not in attempts.columns:
            params = self._queue.results(group=group, tag=tag)
            if by in params.columns:
                attempts = attempts.join(params[[by]], on="job_id")
        return runtimes(attempts, by=by, ax=ax)
