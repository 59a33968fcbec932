"""Draw the README's plots from a real run: docs/images/timeline.png and runtimes.png.

    .venv/bin/python scripts/plot_images.py

Runs 16 short jobs through a real pool of 3 threads on a throwaway SQLite queue: sleeps of
0.2 to 0.8 s, three flaky jobs that fail once and pass on their retry, one that fails for good
and one that times out. Then draws the history with ``queuectl.plots`` and saves both images.
Timings differ on every run, so the images do too.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after the backend is chosen

from queuectl.api import connect
from queuectl.plots import runtimes, timeline

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
DPI = 100


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="queuectl-plots-") as tmp:
        os.environ["QUEUECTL_HOME"] = str(Path(tmp) / "home")  # not the user's own queue home
        with connect(str(Path(tmp) / "queue.db")) as q:
            q.set_config("backoff_max", 0.3)  # retries follow soon: the picture stays short
            durations = random.Random(7)
            for n in range(11):
                q.enqueue(f"sleep {durations.uniform(0.2, 0.8):.2f}", id=f"sleep-{n}")
            for n in range(3):
                marker = Path(tmp) / f"flaky-{n}"
                q.enqueue(
                    f"sleep 0.3; test -e {marker} || {{ touch {marker}; exit 1; }}",
                    id=f"flaky-{n}",
                    max_retries=2,
                )
            q.enqueue("sleep 0.4; exit 3", id="broken", max_retries=1)
            q.enqueue("sleep 5", id="too-slow", timeout=0.7, max_retries=0)
            q.run_workers(3, until_empty=True)
            attempts = q.attempts()

    ax = timeline(attempts)
    ax.set_title("queuectl.plots.timeline(q.attempts())", loc="left")
    ax.figure.set_size_inches(9, ax.figure.get_figheight())
    save(ax.figure, IMAGES / "timeline.png")

    ax = runtimes(attempts)
    ax.set_title("queuectl.plots.runtimes(q.attempts())", loc="left")
    ax.figure.set_size_inches(9, 4)
    save(ax.figure, IMAGES / "runtimes.png")
    print(f"{len(attempts)} attempts drawn into {IMAGES}")


def save(figure: object, path: Path) -> None:
    assert isinstance(figure, plt.Figure)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    main()
