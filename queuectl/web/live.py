"""Live updates: one reading of the queue per tick, shared by every open page.

A thread of its own reads ``Queue.snapshot()`` (kept counts and a few index reads: its cost
does not grow with the queue) once per interval while someone looks (a page's event stream,
a scrape of /metrics), and the attempt history for the charts every ``HISTORY_TICKS``
ticks. Each page's server-sent event stream only compares version numbers in memory: a
hundred open pages cost the queue what one does. A job's page also follows its running
attempt's output (``follow``), as ``queuectl logs --follow`` does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from queuectl.api import Queue
from queuectl.commands.results import StatusReport, attempt_json, job_json, output_text
from queuectl.errors import QueuectlError
from queuectl.follow import Chunk, follow
from queuectl.model import Attempt
from queuectl.model.status import QueueSnapshot
from queuectl.store import redact
from queuectl.store.base import AttemptHistory
from queuectl.text import iso, printable

#: jobs the overview lists: running ones first, then the newest; and the newest dead ones
LISTED = 10
#: ticks between readings of the attempt history (charts, /metrics), at least: it reads every
#: attempt, so a long one spaces them out further
HISTORY_TICKS = 10
#: the throughput chart: an hour, by the minute
HISTORY_SPAN = 3600.0
HISTORY_BUCKET = 60.0
#: upper bounds of the runtime histogram's buckets, seconds
RUNTIME_BOUNDS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: seconds without a reader after which the ticker stops reading the queue
IDLE_AFTER = 15.0
#: seconds between keep-alive comments on an idle event stream
PING = 15


@dataclass(frozen=True)
class Frame:
    """One reading of the queue, as every open page gets it."""

    version: int  #: grows when what the pages show changed
    snapshot: QueueSnapshot
    data: str  #: the event's JSON
    history: AttemptHistory | None
    history_since: datetime | None
    history_version: int


class Ticker:
    """Reads the queue once per ``interval`` while anyone looks, in a thread of its own."""

    def __init__(self, queue: Queue, interval: float) -> None:
        self.queue = queue
        self.interval = interval
        self.frame: Frame | None = None
        self.error: str | None = None  #: why the last reading failed (the page says it)
        self.reads = 0  #: snapshots read so far
        self.history_reads = 0
        self._demanded = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queuectl-dashboard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def demand(self) -> None:
        """Someone looks: keep reading (or start again)."""
        self._demanded = time.monotonic()
        self._wake.set()

    def current(self, timeout: float = 10.0) -> Frame:
        """The latest frame, waiting for the first (``QueuectlError`` if none came)."""
        self.demand()
        if self.frame is None:
            self._ready.wait(timeout)
        if self.frame is None:
            raise QueuectlError(self.error or "the queue could not be read yet.")
        return self.frame

    def _run(self) -> None:
        history_due = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._demanded > IDLE_AFTER:
                    self._wake.wait()
                    self._wake.clear()
                    continue
                started = time.monotonic()
                try:
                    self._read(history=started >= history_due)
                    self.error = None
                    if started >= history_due:
                        # Its cost grows with the history (1.6 s at a million attempts):
                        # read it again after 20 times that, so it takes 5% of a core at most.
                        took = time.monotonic() - started
                        history_due = started + max(HISTORY_TICKS * self.interval, 20 * took)
                except QueuectlError as exc:  # shown on the pages; the next tick tries again
                    self.error = redact(exc.message)
                self._ready.set()
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.queue.release()

    def _read(self, history: bool) -> None:
        shot = self.queue.snapshot(recent=LISTED, listed=LISTED)
        self.reads += 1
        previous = self.frame
        read, since = (previous.history, previous.history_since) if previous else (None, None)
        history_version = previous.history_version if previous else 0
        if history:
            since = _floor(shot.now.timestamp() - HISTORY_SPAN, HISTORY_BUCKET)
            read = self.queue.store.attempt_history(since, HISTORY_BUCKET, RUNTIME_BOUNDS)
            self.history_reads += 1
            if previous is None or read != previous.history:
                history_version += 1
        shown = {
            "status": StatusReport(shot.status).to_json(),
            "jobs": [job_json(job) for job in shot.running_then_newest(LISTED)],
            "dead": [job_json(job) for job in shot.dead[:LISTED]],
            "history_version": history_version,
        }
        changed = previous is None or json.dumps(shown) != _shown(previous.data)
        version = (previous.version if previous else 0) + changed
        data = json.dumps({"version": version, "now": iso(shot.now), **shown})
        self.frame = Frame(version, shot, data, read, since, history_version)


def _shown(data: str) -> str:
    """A frame's JSON without its version and time: what tells whether the pages changed."""
    loaded = json.loads(data)
    del loaded["version"], loaded["now"]
    return json.dumps(loaded)


def _floor(epoch: float, step: float) -> datetime:
    return datetime.fromtimestamp(epoch - epoch % step, UTC)


def snapshot_events(ticker: Ticker, request: Request) -> EventSourceResponse:
    """The event stream of the overview and of every page's counts: a ``snapshot`` event
    each time the queue's reading changed (at once: the latest)."""
    poll = min(ticker.interval / 2, 0.5)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        seen = -1
        while True:
            ticker.demand()
            frame = ticker.frame
            if frame is not None and frame.version != seen:
                seen = frame.version
                yield ServerSentEvent(data=frame.data, event="snapshot", id=str(seen))
            await anyio.sleep(poll)

    return EventSourceResponse(stream(), ping=PING)


class _Gone(Exception):
    """The page that followed the output went away."""


async def tail_events(queue: Queue, job_id: str, interval: float) -> EventSourceResponse:
    """A job's running attempt's output as it comes (``chunk`` events: the stream and its
    text, control characters escaped), then ``end`` with the attempt; ``NotFound`` if the
    job has no such run."""
    gone = threading.Event()

    def sleep(seconds: float) -> None:
        if gone.wait(seconds):
            raise _Gone

    def start() -> Iterator[Chunk | Attempt]:
        return follow(queue.store, job_id, poll=interval, sleep=sleep)

    updates = await anyio.to_thread.run_sync(start)  # NotFound: the job never ran

    def step() -> Chunk | Attempt | None:
        try:
            return next(updates, None)
        except (_Gone, QueuectlError):  # gone, or ended without running (NotFound)
            return None

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                # Abandoned when the page goes: ``gone`` then ends the thread's wait.
                update = await anyio.to_thread.run_sync(step, abandon_on_cancel=True)
                if isinstance(update, Chunk):
                    text = printable(output_text(update.data))
                    data = json.dumps({"stream": update.stream, "text": text})
                    yield ServerSentEvent(data=data, event="chunk")
                    continue
                ended = attempt_json(update) if update is not None else None
                yield ServerSentEvent(data=json.dumps(ended), event="end")
                return
        finally:
            gone.set()

    return EventSourceResponse(stream(), ping=PING)
