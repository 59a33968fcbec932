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

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from queuectl.api import Queue
from queuectl.commands.results import StatusReport, attempt_json, job_json, output_text
from queuectl.errors import NotFound, QueuectlError
from queuectl.follow import Chunk, new_output, run_key
from queuectl.model import Attempt, Job, State
from queuectl.model.status import QueueSnapshot
from queuectl.store import redact
from queuectl.store.base import AttemptHistory
from queuectl.text import iso, printable
from queuectl.web.api import ApiError

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
#: seconds an event stream has to end when the server stops (uvicorn waits 2)
SHUTDOWN_GRACE = 1.0
#: a frame older than this many intervals is read again before a request uses it (the
#: ticker slept: nobody looked), waiting at most ``FRESH_WAIT`` seconds
STALE_INTERVALS = 2
FRESH_WAIT = 2.0
#: open streams of running output at once (each reads the queue once a tick)
TAILS = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One reading of the queue, as every open page gets it."""

    version: int  #: grows when what the pages show changed
    snapshot: QueueSnapshot
    data: str  #: the event's JSON
    history: AttemptHistory | None  #: None until the first reading of the history
    history_since: datetime | None
    history_version: int
    #: ``time.monotonic()`` when its snapshot was read
    read_at: float = field(default_factory=time.monotonic)


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
        self._ticked = threading.Condition()  #: notified after each tick, read or failed
        self._ticks = 0
        self._logged: set[str] = set()  #: unexpected errors logged already (once each)
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
        self._thread.join(timeout=5)
        self._history_thread.join(timeout=5)

    def demand(self) -> None:
        """Someone looks: keep reading (or start again)."""
        self._demanded = time.monotonic()
        self._wake.set()

    def current(self, timeout: float = 10.0) -> Frame:
        """The latest frame, waiting for the first (``QueuectlError`` if none came), and for
        a while for the first reading of the history. A frame that has grown old (the ticker
        slept: nobody looked) is read again first, waiting ``FRESH_WAIT`` at most."""
        with self._ticked:
            ticks = self._ticks
        self.demand()
        if self.frame is None:
            self._ready.wait(timeout)
        if self.frame is None:
            raise QueuectlError(self.error or "the queue could not be read yet.")
        if time.monotonic() - self.frame.read_at > STALE_INTERVALS * self.interval:
            with self._ticked:  # the next tick: the one this call woke, or one under way
                self._ticked.wait_for(lambda: self._ticks > ticks, FRESH_WAIT)
        self._charted.wait(min(timeout, HISTORY_FIRST_WAIT))
        return self.frame

    def _failed(self, exc: Exception) -> str:
        """What the pages say of an error of a reading; an unexpected one is logged (once)."""
        if isinstance(exc, QueuectlError):
            return redact(exc.message)
        said = redact(f"the queue could not be read: {type(exc).__name__}: {exc}")
        if said not in self._logged:
            self._logged.add(said)
            log.error("queuectl dashboard: %s", said, exc_info=exc)
        return said

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
                    self._publish(shot, started)
                    self._ask_history(shot)
                except Exception as exc:  # shown on the pages; the next tick tries again
                    self.error = self._failed(exc)
                    if self.frame is not None:
                        with contextlib.suppress(Exception):  # (said at the next tick)
                            self._publish(self.frame.snapshot, self.frame.read_at)
                with self._ticked:
                    self._ticks += 1
                    self._ticked.notify_all()
                self._ready.set()
                self._nudge.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.queue.release()

    def _publish(self, shot: QueueSnapshot, read_at: float) -> None:
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
        self.frame = Frame(
            version, shot, data, history.read, history.since, history.version, read_at
        )
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
        except Exception as exc:  # the charts keep the last reading; the page says why
            self.history_error = self._failed(exc)
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

    stopping = anyio.Event()

    async def stream() -> AsyncIterator[ServerSentEvent]:
        seen = -1
        while True:
            ticker.demand()
            frame = ticker.frame
            if frame is not None and frame.version != seen:
                seen = frame.version
                yield ServerSentEvent(data=frame.data, event="snapshot", id=str(seen))
            if await _stopped(stopping, poll):
                return

    return _response(stream(), stopping)


async def _stopped(stopping: anyio.Event, seconds: float) -> bool:
    """Wait ``seconds``; whether the server stops (then the stream ends, its answer whole)."""
    with anyio.move_on_after(seconds):
        await stopping.wait()
    return stopping.is_set()


def _response(stream: AsyncIterator[ServerSentEvent], stopping: anyio.Event) -> EventSourceResponse:
    """An event stream that ends cleanly when the server stops (Ctrl-C)."""
    return EventSourceResponse(
        stream, ping=PING, shutdown_event=stopping, shutdown_grace_period=SHUTDOWN_GRACE
    )


class Tails:
    """The streams of running output (``/jobs/ID/tail``): at most ``TAILS`` at once, each
    reading the queue once a tick in a worker thread that it gives back between reads."""

    def __init__(self, queue: Queue, interval: float) -> None:
        self.queue = queue
        self.interval = interval
        self.open = anyio.CapacityLimiter(TAILS)

    async def events(self, job_id: str) -> EventSourceResponse:
        """A job's running attempt's output as it comes (``chunk`` events: the stream and
        its text, control characters escaped), then ``end`` with the attempt (null if the
        job ended without running); ``NotFound`` if the job has no such run, ``ApiError``
        503 when ``TAILS`` are open."""
        tail = _Tail(self.queue, job_id)
        await anyio.to_thread.run_sync(tail.start)  # NotFound: the job never ran
        try:
            self.open.acquire_on_behalf_of_nowait(tail)
        except anyio.WouldBlock:
            raise ApiError(
                503, f"{TAILS} pages follow running output already: close one."
            ) from None

        async def stream() -> AsyncIterator[ServerSentEvent]:
            try:
                while True:
                    chunks, ended, attempt = await anyio.to_thread.run_sync(tail.read)
                    for chunk in chunks:
                        text = printable(output_text(chunk.data))
                        data = json.dumps({"stream": chunk.stream, "text": text})
                        yield ServerSentEvent(data=data, event="chunk")
                    if ended:
                        shown = attempt_json(attempt) if attempt is not None else None
                        yield ServerSentEvent(data=json.dumps(shown), event="end")
                        return
                    if await _stopped(stopping, self.interval):  # (no thread held meanwhile)
                        return
            finally:
                self.open.release_on_behalf_of(tail)

        stopping = anyio.Event()
        return _response(stream(), stopping)


class _Tail:
    """One run's output, read a step at a time (as ``queuectl.follow.follow`` does, without
    sleeping in between): which run, what was shown of it."""

    def __init__(self, queue: Queue, job_id: str) -> None:
        self.store = queue.store
        self.job_id = job_id
        self.shown = {"stdout": 0, "stderr": 0}
        self.job: Job | None = None
        self.latest: Attempt | None = None
        self.before: tuple[int, datetime] | None = None

    def start(self) -> None:
        self.job = job = self.store.get(self.job_id)
        self.latest = latest = self.store.last_attempt(self.job_id)
        if not job.state.active and latest is None:
            raise NotFound(f"job '{self.job_id}' is {job.state} and never ran: it has no output.")
        # A waiting job's last run is over: follow the next one.
        if job.state is not State.PROCESSING and latest is not None:
            self.before = run_key(latest)

    def read(self) -> tuple[list[Chunk], bool, Attempt | None]:
        """The new output, whether the run ended, and how (None: the job ended without
        running)."""
        try:
            if self.job is not None and not self.job.state.active and self.latest is not None:
                return list(new_output(self.latest, self.shown)), True, self.latest
            attempt = self.store.last_attempt(self.job_id)
            if attempt is None or run_key(attempt) == self.before:
                return [], not self.store.get(self.job_id).state.active, None
            chunks = list(new_output(attempt, self.shown))
            return chunks, attempt.finished_at is not None, attempt
        except QueuectlError:  # the job went (pruned): the end
            return [], True, None
