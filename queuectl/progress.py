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
    """Jobs finished out of those unfinished when waiting began (plus any enqueued since).

    Shown only when ``show`` is true, or, when ``show`` is None, in a kernel or when stderr is
    a terminal. Otherwise every method does nothing.
    """

    def __init__(self, total: int, unfinished: int, show: bool | None = None) -> None:
        if show is None:
            show = in_kernel() or sys.stderr.isatty()
        self._first_total = total
        self._first_unfinished = unfinished
        self._bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=unfinished, unit="job", desc="jobs", dynamic_ncols=True)

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
        finished = {state.value: counts.get(state, 0) for state in State if not state.active}
        self._bar.set_postfix(**{k: n for k, n in finished.items() if n or k != "cancelled"})
        self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
