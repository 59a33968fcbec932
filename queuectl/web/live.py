"""Live updates: one reading of the queue per tick, shared by every open page.

A thread of its own reads ``Queue.snapshot()`` (kept counts and a few index reads: its cost
does not grow with the queue) once per interval while someone looks (a page's event stream,
a scrape of /metrics). Another reads the recent attempt history for the charts and /metrics
(``Store.attempt_history``: the newest attempts only, by their primary key) at once on the
first tick, then whenever the snapshot shows that attempts may have finished, spaced by its
own cost so that it takes 5% of a core at most; the ticks never wait for it. Each page's
server-sent event stream only compares version numbers in memory: a hundred open pages cost
the queue what one does. A job's page also follows its running attempt's output
(``follow``), as ``queuectl logs --follow`` does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from queuectl.api import Queue
from queuectl.commands.results import StatusReport, attempt_json, job_json, output_text
from queuectl.errors import QueuectlError
from queuectl.follow import Chunk, follow
from queuectl.model import Attempt, State
from queuectl.model.status import QueueSnapshot
from queuectl.store import redact
from queuectl.store.base import AttemptHistory
from queuectl.text import iso, printable

#: jobs the overview lists: running ones first, then the newest; and the newest dead ones
LISTED = 10
#: the throughput chart: an hour, by the minute
HISTORY_SPAN = 3600.0
HISTORY_BUCKET = 60.0
#: ... of the attempts started at most this long ago (a longer run that ended within the
#: hour is left out): the newest ids, so that the read does not grow with the history
HISTORY_STARTED = 86400.0
#: the runtime histogram: the completed attempts among this many newest
HISTORY_NEWEST = 10_000
#: upper bounds of the runtime histogram's buckets, seconds
RUNTIME_BOUNDS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: ticks between readings of the history when the snapshot shows no change (a job retried
#: between two ticks may leave every count as it was)
HISTORY_TICKS = 10
#: a reading of the history starts no sooner than this many times the last one's cost
#: after it: 5% of a core at most
HISTORY_SPACING = 20
#: seconds the first page waits for the first reading of the history (then it says
#: "reading", and the event stream brings the charts)
HISTORY_FIRST_WAIT = 2.0
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
    history: AttemptHistory | None  #: None until the first reading of the history
    history_since: datetime | None
    history_version: int


@dataclass(frozen=True)
class _History:
    read: AttemptHistory | None = None
    since: datetime | None = None
    version: int = 0


class Ticker:
    """Reads the queue once per ``interval`` while anyone looks, in a thread of its own, and
    its attempt history when it changed, in another."""

    def __init__(self, queue: Queue, interval: float) -> None:
        self.queue = queue
        self.interval = interval
        self.frame: Frame | None = None
        self.error: str | None = None  #: why the last reading failed (the page says it)
        self.history_error: str | None = None
        self.reads = 0  #: snapshots read so far
        self.history_reads = 0
        self.history_took = 0.0  #: seconds the last reading of the history took
        self._history = _History()
        self._asked: tuple[object, datetime] | None = None  #: what the last request saw
        self._asked_at = 0  #: ``reads`` then
        self._asking: datetime | None = None  #: the time of the history wanted now
        self._history_due = 0.0  #: monotonic time before which no reading starts
        self._demanded = time.monotonic()
        self._wake = threading.Event()
        self._nudge = threading.Event()  #: tick now: a reading of the history came
        self._history_wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._charted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queuectl-dashboard", daemon=True)
        self._history_thread = threading.Thread(
            target=self._run_history, name="queuectl-dashboard-history", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._history_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._nudge.set()
        self._history_wake.set()
        self._thread.join(timeout=10)
        self._history_thread.join(timeout=10)

    def demand(self) -> None:
        """Someone looks: keep reading (or start again)."""
        self._demanded = time.monotonic()
        self._wake.set()

    def current(self, timeout: float = 10.0) -> Frame:
        """The latest frame, waiting for the first (``QueuectlError`` if none came), and for
        a while for the first reading of the history."""
        self.demand()
        if self.frame is None:
            self._ready.wait(timeout)
        if self.frame is None:
            raise QueuectlError(self.error or "the queue could not be read yet.")
        self._charted.wait(min(timeout, HISTORY_FIRST_WAIT))
        return self.frame

    # -- the ticker's thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._demanded > IDLE_AFTER:
                    self._wake.wait()
                    self._wake.clear()
                    continue
                started = time.monotonic()
                self._nudge.clear()
                try:
                    shot = self.queue.snapshot(recent=LISTED, listed=LISTED)
                    self.reads += 1
                    self.error = None
                    self._publish(shot)
                    self._ask_history(shot)
                except QueuectlError as exc:  # shown on the pages; the next tick tries again
                    self.error = redact(exc.message)
                    if self.frame is not None:
                        self._publish(self.frame.snapshot)
                self._ready.set()
                self._nudge.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.queue.release()

    def _publish(self, shot: QueueSnapshot) -> None:
        previous = self.frame
        history = self._history
        shown = {
            "status": StatusReport(shot.status).to_json(),
            "jobs": [job_json(job) for job in shot.running_then_newest(LISTED)],
            "dead": [job_json(job) for job in shot.dead[:LISTED]],
            "history_version": history.version,
            "error": self.error or self.history_error,
        }
        changed = previous is None or json.dumps(shown) != _shown(previous.data)
        version = (previous.version if previous else 0) + changed
        data = json.dumps({"version": version, "now": iso(shot.now), **shown})
        self.frame = Frame(version, shot, data, history.read, history.since, history.version)
        if history.read is not None or self.history_error:  # (no page waits for it any more)
            self._charted.set()

    def _ask_history(self, shot: QueueSnapshot) -> None:
        """Have the history read if attempts may have finished since the last reading (the
        snapshot changed), the hour moved on by a minute, or ``HISTORY_TICKS`` went by; not
        while a reading runs, nor sooner than its spacing allows."""
        seen = (_finished_mark(shot), _floor(shot.now.timestamp() - HISTORY_SPAN, HISTORY_BUCKET))
        due = self._asked != seen or self.reads - self._asked_at >= HISTORY_TICKS
        if not due or self._asking is not None or time.monotonic() < self._history_due:
            return
        self._asked, self._asked_at, self._asking = seen, self.reads, shot.now
        self._history_wake.set()

    # -- the history's thread ----------------------------------------------------------------

    def _run_history(self) -> None:
        try:
            while True:
                self._history_wake.wait()
                self._history_wake.clear()
                if self._stop.is_set():
                    return
                if self._asking is not None:
                    self._read_history(self._asking)
                    self._nudge.set()
        finally:
            self.queue.release()

    def _read_history(self, now: datetime) -> None:
        started = time.monotonic()
        try:
            read, since = read_history(self.queue, now)
            self.history_reads += 1
            self.history_error = None
            previous = self._history
            version = previous.version + (read != previous.read)
            self._history = _History(read, since, version)
        except QueuectlError as exc:  # the charts keep the last reading; the page says why
            self.history_error = redact(exc.message)
            self._asked = None  # tried again on the next tick
        finally:
            self.history_took = time.monotonic() - started
            self._history_due = started + HISTORY_SPACING * self.history_took
            self._asking = None


def read_history(queue: Queue, now: datetime) -> tuple[AttemptHistory, datetime]:
    """What the charts and /metrics show at ``now``, and the start of its first minute: the
    attempts that finished in each minute of the last hour (of those started in the last
    ``HISTORY_STARTED`` seconds), and the runtimes of the completed ones among the
    ``HISTORY_NEWEST`` newest."""
    since = _floor(now.timestamp() - HISTORY_SPAN, HISTORY_BUCKET)
    read = queue.store.attempt_history(
        since,
        HISTORY_BUCKET,
        RUNTIME_BOUNDS,
        started=now - timedelta(seconds=HISTORY_STARTED),
        newest=HISTORY_NEWEST,
    )
    return read, since


def _finished_mark(shot: QueueSnapshot) -> object:
    """What an attempt's end changes in a snapshot: the counts per state, or the jobs it
    lists (a job retried at once goes from processing to failed to processing again)."""
    counts = tuple(shot.status.counts.get(state, 0) for state in State)
    listed = (*shot.running, *shot.recent, *shot.dead)
    return counts, tuple((job.id, job.state, job.attempts) for job in listed)


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
