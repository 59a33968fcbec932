"""The progress bar of ``Queue.wait``: a widget in a Jupyter kernel, text on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from queuectl.model import State


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where a widget can be shown)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return get_ipython is not None and getattr(get_ipython(), "kernel", None) is not None


class Progress:
    """The jobs of one wait: those unfinished when it began (plus any enqueued since), and
    how they ended ("completed=3, dead=1": this wait's jobs, not the queue's totals).

    Shown only when ``show`` is true, or, when ``show`` is None, in a kernel or when stderr is
    a terminal; never when nothing was unfinished (no empty "0/0" bar). Otherwise every method
    does nothing. In a notebook the bar's text is brought up to date when it closes, so that a
    saved notebook shows how the wait ended, not a bar frozen at 0%.
    """

    def __init__(
        self, counts: Mapping[State, int], unfinished: int, show: bool | None = None
    ) -> None:
        if show is None:
            show = in_kernel() or sys.stderr.isatty()
        self._first_total = sum(counts.values())
        self._first_unfinished = unfinished
        self._first_finished = {state: counts.get(state, 0) for state in State if not state.active}
        self._bar: Any = None
        self._shown: Any = None  # the notebook's display of the bar, updated when it closes
        if not show or not unfinished:
            return
        bar_options: dict[str, Any] = {"total": unfinished, "unit": "job", "desc": "jobs"}
        if in_kernel():
            from IPython.display import display
            from tqdm.notebook import tqdm as notebook_tqdm

            self._bar = notebook_tqdm(**bar_options, display=False)
            self._shown = display(self._bar.container, display_id=True)  # type: ignore[no-untyped-call]
        else:
            from tqdm import tqdm

            self._bar = tqdm(**bar_options, dynamic_ncols=True)

    def update(self, counts: Mapping[State, int]) -> None:
        """Show the current counts."""
        if self._bar is None:
            return
        active = sum(n for state, n in counts.items() if state.active)
        total = self._first_unfinished + max(sum(counts.values()) - self._first_total, 0)
        total = max(total, active)
        if total != self._bar.total:
            self._bar.reset(total=total)  # (a notebook bar takes a new total only this way)
        self._bar.n = total - active
        ended = {
            state.value: max(counts.get(state, 0) - first, 0)
            for state, first in self._first_finished.items()
        }
        self._bar.set_postfix(**{k: n for k, n in ended.items() if n or k != "cancelled"})
        self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._shown is not None:
            self._shown.update(self._bar.container)  # its text: the bar as it ended
