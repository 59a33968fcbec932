"""A benchmark figure, the table it is printed in, and the machine it was measured on."""

from __future__ import annotations

import os
import platform
import sqlite3
from dataclasses import dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    floor_name: str | None = None
    floor: float | None = None
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """The figure against its floor: a share of the floor's rate, or a multiple of its time."""
        if self.floor is None:
            return None
        return self.value / self.floor


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (the nearest sample)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> dict[str, str | int | None]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def table(figures: list[Figure]) -> str:
    lines = [f"{'figure':<40} {'value':>12}  {'unit':<12} {'ratio to floor':<30}"]
    for f in figures:
        ratio = ""
        if f.ratio is not None:
            ratio = f"{f.ratio:.2f}x {f.floor_name} ({f.floor:,.1f})"
        lines.append(f"{f.name:<40} {f.value:>12,.1f}  {f.unit:<12} {ratio}")
    return "\n".join(lines)
