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
from datetime import datetime

from queuectl.errors import NotFound
from queuectl.model import Attempt, Job, State
from queuectl.store import Store

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class Chunk:
    """New output of one stream."""

    stream: str  #: ``stdout`` or ``stderr``
    data: bytes


def follow(
    store: Store,
    job_id: str,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Chunk | Attempt]:
    """Yield the output of the job's current run as ``Chunk``s until that run has ended, then
    the ended ``Attempt``.

    Which run: the running one; for a job that waits (pending, or failed and waiting for its
    retry), its next run, waited for; for a finished job, its last run.

    Raises:
        NotFound: there is no such job, or it ended without the run it was waiting for
            (cancelled, or moved to the DLQ, before it ran).
    """
    job = store.get(job_id)
    latest = store.last_attempt(job_id)
    if not job.state.active and latest is None:
        raise NotFound(f"job '{job_id}' is {job.state} and never ran: it has no output.")
    return _updates(store, job, latest, poll, sleep)


def _updates(
    store: Store,
    job: Job,
    latest: Attempt | None,
    poll: float,
    sleep: Callable[[float], None],
) -> Iterator[Chunk | Attempt]:
    shown: dict[str, int] = dict.fromkeys(STREAMS, 0)
    if not job.state.active and latest is not None:
        yield from new_output(latest, shown)
        yield latest
        return
    # A waiting job's last run is over: follow the next one.
    before = None if job.state is State.PROCESSING or latest is None else run_key(latest)
    while True:
        attempt = store.last_attempt(job.id)
        if attempt is None or run_key(attempt) == before:
            state = store.get(job.id).state
            if not state.active:
                raise NotFound(f"job '{job.id}' is {state}: it ended without running again.")
            sleep(poll)
            continue
        yield from new_output(attempt, shown)
        if attempt.finished_at is not None:
            yield attempt
            return
        sleep(poll)


def run_key(attempt: Attempt) -> tuple[int, datetime]:
    """What tells one run of a job from another (a copied queue may repeat a number)."""
    return attempt.number, attempt.started_at


def new_output(attempt: Attempt, shown: dict[str, int]) -> Iterator[Chunk]:
    """What ``attempt`` printed beyond ``shown`` (bytes shown per stream, updated)."""
    for stream in STREAMS:
        tail: bytes = getattr(attempt, stream)
        total: int | None = getattr(attempt, f"{stream}_bytes")
        if total is None:  # an attempt from before byte counts: its tail is all there is
            total = len(tail)
        new = total - shown[stream]
        if new <= 0:
            continue
        if new > len(tail):
            skipped = new - len(tail)
            yield Chunk(stream, f"[... {skipped} bytes not kept (output_max_bytes) ...]\n".encode())
            new = len(tail)
        yield Chunk(stream, tail[len(tail) - new :])
        shown[stream] = total


def exit_status(attempt: Attempt) -> int:
    """The exit status a shell would give for the attempt: its exit code, 128 + the signal
    for a command killed by one, and 1 for one that could not start."""
    code = attempt.exit_code
    if code is None:
        return 1
    return 128 - code if code < 0 else code
