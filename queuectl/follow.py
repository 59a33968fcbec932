"""Following a job's output while it runs: what ``logs --follow`` prints.

A running attempt's pool writes the tails of its output to the store about once a second
(with the number of bytes each stream had in all), so this works from any host. Each read
shows what is new since the last: the byte counts say how much, the tails hold the end of it.
When more arrived between two reads than a tail keeps (``output_max_bytes``), a note says how
many bytes were skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from queuectl.model import Attempt
from queuectl.store import Store

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class Chunk:
    """New output of one stream."""

    stream: str  #: ``stdout`` or ``stderr``
    data: bytes


@dataclass
class _Shown:
    """How many bytes of each stream of one attempt were shown."""

    number: int
    counts: dict[str, int]


def follow(
    store: Store,
    job_id: str,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Chunk | Attempt]:
    """Yield the new output of the job's latest attempt as ``Chunk``s until that attempt has
    ended, then the ended ``Attempt``. A job that has not run yet is waited for.

    Raises:
        NotFound: there is no such job (checked at once).
    """
    store.get(job_id)
    shown: _Shown | None = None
    while True:
        attempt = store.last_attempt(job_id)
        if attempt is None:
            sleep(poll)
            continue
        if shown is None or shown.number != attempt.number:
            shown = _Shown(attempt.number, dict.fromkeys(STREAMS, 0))
        yield from _news(attempt, shown)
        if attempt.finished_at is not None:
            yield attempt
            return
        sleep(poll)


def _news(attempt: Attempt, shown: _Shown) -> Iterator[Chunk]:
    for stream in STREAMS:
        tail: bytes = getattr(attempt, stream)
        total: int | None = getattr(attempt, f"{stream}_bytes")
        if total is None:  # an attempt from before byte counts: its tail is all there is
            total = len(tail)
        new = total - shown.counts[stream]
        if new <= 0:
            continue
        if new > len(tail):
            skipped = new - len(tail)
            yield Chunk(stream, f"[... {skipped} bytes not kept (output_max_bytes) ...]\n".encode())
            new = len(tail)
        yield Chunk(stream, tail[len(tail) - new :])
        shown.counts[stream] = total


def exit_status(attempt: Attempt) -> int:
    """The exit status a shell would give for the attempt: its exit code, 128 + the signal
    for a command killed by one, and 1 for one that could not start."""
    code = attempt.exit_code
    if code is None:
        return 1
    return 128 - code if code < 0 else code
