"""The Python API: ``queuectl.connect(...)`` returns a ``Queue``.

The CLI and the notebook magic are both built on this class; it holds no SQL and no rendering.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from queuectl.errors import InvalidInput
from queuectl.model import Attempt, Config, Job, NewJob, State, WorkerInfo
from queuectl.model import config as config_keys
from queuectl.model import metrics as metrics_model
from queuectl.model.job import unfinished
from queuectl.model.parse import new_job, validate_state
from queuectl.store import Store, open_store, queue_home, redact, resolve_target
from queuectl.worker.pool import WorkerPool, host_name

_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class QueueStatus:
    """Counts per state and the live worker pools of a queue."""

    location: str
    counts: dict[State, int]
    workers: list[WorkerInfo]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def generate_id() -> str:
    """A short random job id (10 characters from ``a-z0-9``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def connect(db: str | None = None) -> Queue:
    """Open a queue: a path or URL, else ``QUEUECTL_DB``, else ``~/.queuectl/queue.db``."""
    target = resolve_target(db)
    return Queue(open_store(target), target)


class Queue:
    """A job queue: enqueue shell commands, inspect jobs and their history, run workers."""

    def __init__(self, store: Store, target: str | None = None) -> None:
        self.store = store
        self.target = target or store.display_url

    def __repr__(self) -> str:
        return f"<queuectl.Queue {self.location}>"

    @property
    def location(self) -> str:
        """Where the queue lives, safe to print."""
        return redact(self.target)

    def close(self) -> None:
        """Close the queue's database connections."""
        self.store.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, command: str, **fields: Any) -> str:
        """Enqueue one shell command; return its id.

        Keyword arguments are job fields: ``id``, ``max_retries``, ``priority``, ``run_at``
        (ISO 8601 or datetime) and ``timeout`` (seconds).
        """
        return self.submit([{**fields, "command": command}])[0].id

    def submit(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Validate job field mappings and enqueue them all in one transaction (all or none)."""
        validated = [new_job(fields) for fields in jobs]
        if not validated:
            raise InvalidInput("no jobs given.")
        ids = [job.id for job in validated if job.id is not None]
        if len(ids) != len(set(ids)):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise InvalidInput(f"job id '{duplicate}' is given twice.")
        with_ids = [job if job.id else _with_id(job) for job in validated]
        return self.store.enqueue(with_ids)

    def get(self, job_id: str) -> Job:
        """One job (``NotFound`` if there is none)."""
        return self.store.get(job_id)

    def jobs(self, state: State | str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs, newest first, optionally of one state."""
        chosen = validate_state(state) if isinstance(state, str) else state
        return self.store.jobs(chosen, limit)

    def attempts(self, job_id: str | None = None) -> list[Attempt]:
        """The attempt history: of one job, or of the whole queue, in start order."""
        return self.store.attempts(job_id)

    def dlq(self, limit: int | None = None) -> list[Job]:
        """The dead letter queue: jobs that used up their retries."""
        return self.store.jobs(State.DEAD, limit)

    def retry(self, *job_ids: str, all_dead: bool = False) -> list[Job]:
        """Move dead jobs back to pending with attempts reset; their history stays."""
        if all_dead:
            return self.store.revive_all_dead()
        if not job_ids:
            raise InvalidInput("name the dead jobs to retry, or retry all of them.")
        return self.store.revive(list(dict.fromkeys(job_ids)))

    def counts(self) -> dict[State, int]:
        """Number of jobs in each state."""
        return self.store.counts()

    def status(self) -> QueueStatus:
        """Counts per state and live worker pools."""
        return QueueStatus(self.location, self.store.counts(), self.workers())

    def metrics(self) -> metrics_model.Metrics:
        """Throughput, runtimes and failure rate over the attempt history."""
        return metrics_model.compute(self.store.finished_attempts(), self.store.now())

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        """The queue's configuration."""
        return self.store.config()

    def set_config(self, key: str, value: str | float) -> tuple[str, int | float]:
        """Validate and store one key (aliases accepted); return (canonical key, value)."""
        name, parsed = config_keys.parse_setting(key, str(value))
        self.store.set_config(name, parsed)
        return name, parsed

    # -- workers ------------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        """Live worker pools. Rows of pools that died without saying so are dropped first.

        A pool is gone when its heartbeat is older than three leases, or when it ran on this
        host and its process no longer exists. Nothing is written when all pools are alive.
        """
        silent = max(3 * self.store.config().lease_seconds, 10.0)
        now, here = self.store.now(), host_name()
        live = []
        for worker in self.store.workers():
            stale = (now - worker.heartbeat_at).total_seconds() > silent
            if stale or (worker.host == here and not _pid_alive(worker.pid)):
                self.store.deregister_worker(worker.id)
            else:
                live.append(worker)
        return live

    def run_workers(
        self, count: int = 1, *, until_empty: bool = False, poll_interval: float | None = None
    ) -> None:
        """Run a pool in this process until it is stopped (or, ``until_empty``, drained)."""
        WorkerPool(self.store, count, until_empty=until_empty, poll_interval=poll_interval).run()

    def start_background_pool(self, count: int = 1) -> WorkerInfo:
        """Start a detached pool process (logging to the queue home) and return once it runs."""
        from queuectl.worker.detach import start_pool

        return start_pool(self, count, queue_home() / "logs")

    def stop_workers(self, wait: bool = False, timeout: float | None = None) -> int:
        """Ask every pool of this queue to stop gracefully; return how many were asked.

        With ``wait``, block until they have exited (or ``timeout`` seconds passed).
        """
        asked = self.store.request_stop()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.workers():
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        return asked

    def wait(self, timeout: float | None = None, poll: float = 0.1) -> bool:
        """Block until no job is pending, failed or processing; False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while unfinished(self.counts()):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True

    def now(self) -> datetime:
        """The queue's clock."""
        return self.store.now()


def _with_id(job: NewJob) -> NewJob:
    return replace(job, id=generate_id())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
