"""The embedded store: one SQLite file in WAL mode, shared by every process on one machine.

Concurrency: SQLite has one writer at a time. Every read-then-write runs inside
``BEGIN IMMEDIATE``, which takes the write lock up front so that contending writers wait on the
busy timeout instead of failing with "database is locked". Commits use ``synchronous=FULL``: an
enqueue that returned has reached the disk.

Times are stored as UTC epoch seconds (REAL) and turned into aware datetimes on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from queuectl.errors import DuplicateJob, InvalidTransition, NotFound, SchemaTooNew, StoreError
from queuectl.model import (
    Attempt,
    Claim,
    Config,
    Fence,
    Job,
    NewJob,
    Outcome,
    RunResult,
    State,
    Transition,
    WorkerInfo,
)
from queuectl.model.metrics import FinishedAttempt
from queuectl.store import schema
from queuectl.store.base import Store
from queuectl.store.rows import ATTEMPT_COLUMNS, JOB_COLUMNS, to_attempt, to_datetime, to_job

CLAIMABLE = "state IN ('pending', 'failed') AND run_at <= :now"


class SqliteStore(Store):
    """A queue in one SQLite database file."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.display_url = str(self.path)
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        schema.create_file(self.path)
        self._conn()  # fail early, in the caller's thread, if the file is unusable

    # -- connections --------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._translate():
                conn = sqlite3.connect(
                    self.path,
                    timeout=schema.BUSY_SECONDS,
                    isolation_level=None,
                    check_same_thread=False,
                )
                try:
                    schema.prepare(conn)
                except BaseException:
                    conn.close()
                    raise
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def release(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._all.remove(conn)
            conn.close()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            error = SchemaTooNew if isinstance(exc, schema.TooNew) else StoreError
            raise error(schema.explain(exc, self.path)) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._translate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # never leave the connection inside a transaction
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._translate():
            return self._conn().execute(sql, params).fetchall()

    def now(self) -> datetime:
        return to_datetime(self._clock())

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        with self._write() as conn:
            now = self._clock()  # read under the lock: waiting for it must not age the job
            config = self._config(conn)
            rows = []
            for job in jobs:
                if job.id is None:
                    raise ValueError("enqueue needs jobs with ids")
                params = (
                    job.id,
                    job.command,
                    config.max_retries if job.max_retries is None else job.max_retries,
                    job.priority,
                    now if job.run_at is None else job.run_at.timestamp(),
                    config.job_timeout if job.timeout is None else job.timeout,
                    now,
                    now,
                )
                try:
                    row = conn.execute(
                        "INSERT INTO jobs (id, command, state, max_retries, priority, run_at, "
                        "timeout, created_at, updated_at) "
                        f"VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?) RETURNING {JOB_COLUMNS}",
                        params,
                    ).fetchone()
                except sqlite3.IntegrityError:
                    raise DuplicateJob(
                        f"a job with id '{job.id}' exists already; choose another id."
                    ) from None
                rows.append(to_job(row))
            return rows

    def claim(self, worker_id: str, lease_seconds: float) -> Claim | None:
        # A plain read first: an idle pool never takes the write lock.
        probe = {"now": self._clock()}
        if not self._read(f"SELECT 1 FROM jobs WHERE {CLAIMABLE} LIMIT 1", probe):
            return None
        with self._write() as conn:
            # The lease starts once the lock is ours, however long we waited for it.
            now = self._clock()
            row = conn.execute(
                "UPDATE jobs SET state = 'processing', attempts = attempts + 1, "
                "worker_id = :worker, lease_until = :lease, updated_at = :now "
                f"WHERE rowid = (SELECT rowid FROM jobs WHERE {CLAIMABLE} "
                "ORDER BY priority DESC, run_at, seq LIMIT 1) "
                f"RETURNING {JOB_COLUMNS}",
                {"worker": worker_id, "lease": now + lease_seconds, "now": now},
            ).fetchone()
            if row is None:
                return None
            attempt_id = conn.execute(
                "INSERT INTO attempts (job_id, number, worker_id, started_at) VALUES (?, ?, ?, ?)",
                (row[0], row[3], worker_id, now),
            ).lastrowid
            assert attempt_id is not None
            conn.execute("UPDATE jobs SET attempt_id = ? WHERE id = ?", (attempt_id, row[0]))
        job = to_job(row)
        return Claim(job, Fence(job.id, job.attempts, worker_id, attempt_id))

    def renew(self, fences: Sequence[Fence], lease_seconds: float) -> set[int]:
        if not fences:
            return set()
        held = set()
        with self._write() as conn:
            lease = self._clock() + lease_seconds
            for fence in fences:
                cursor = conn.execute(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND attempts = ? "
                    "AND worker_id = ? AND attempt_id = ? AND state = 'processing'",
                    (lease, fence.job_id, fence.attempt, fence.worker_id, fence.attempt_id),
                )
                if cursor.rowcount == 1:
                    held.add(fence.attempt_id)
        return held

    def finish(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        *,
        only_if_expired: bool = False,
    ) -> bool:
        with self._write() as conn:
            now = self._clock()
            expiry = " AND lease_until < :now" if only_if_expired else ""
            cursor = conn.execute(
                "UPDATE jobs SET state = :state, "
                "run_at = CASE WHEN :state = 'failed' THEN :now + :delay ELSE run_at END, "
                "last_error = COALESCE(:error, last_error), worker_id = NULL, "
                "lease_until = NULL, updated_at = :now "
                "WHERE id = :id AND attempts = :attempt AND worker_id = :worker "
                f"AND attempt_id = :attempt_id AND state = 'processing'{expiry}",
                {
                    "state": transition.state.value,
                    "now": now,
                    "delay": transition.retry_delay,
                    "error": transition.last_error,
                    "id": fence.job_id,
                    "attempt": fence.attempt,
                    "worker": fence.worker_id,
                    "attempt_id": fence.attempt_id,
                },
            )
            if cursor.rowcount != 1:
                return False
            conn.execute(
                "UPDATE attempts SET finished_at = ?, exit_code = ?, outcome = ?, error = ?, "
                "stdout = ?, stderr = ? WHERE id = ?",
                (
                    now,
                    result.exit_code,
                    result.outcome.value,
                    result.error,
                    result.stdout,
                    result.stderr,
                    fence.attempt_id,
                ),
            )
        return True

    def expired(self) -> list[Claim]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'processing' AND lease_until < ?",
            (self._clock(),),
        )
        claims = []
        for row in rows:
            job = to_job(row)
            assert job.worker_id is not None
            claims.append(Claim(job, Fence(job.id, job.attempts, job.worker_id, row[-1])))
        return claims

    def get(self, job_id: str) -> Job:
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"no job with id '{job_id}'.")
        return to_job(rows[0])

    def jobs(self, state: State | None = None, limit: int | None = None) -> list[Job]:
        where = "WHERE state = :state" if state else ""
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT :limit",
            {"state": state.value if state else None, "limit": -1 if limit is None else limit},
        )
        return [to_job(row) for row in rows]

    def attempts(self, job_id: str | None = None) -> list[Attempt]:
        if job_id is None:
            rows = self._read(f"SELECT {ATTEMPT_COLUMNS} FROM attempts ORDER BY id")
        else:
            self.get(job_id)
            rows = self._read(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY id", (job_id,)
            )
        return [to_attempt(row) for row in rows]

    def counts(self) -> dict[State, int]:
        found = dict(self._read("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        return {state: found.get(state.value, 0) for state in State}

    def revive(self, job_ids: Sequence[str]) -> list[Job]:
        with self._write() as conn:
            for job_id in job_ids:
                row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no job with id '{job_id}'.")
                if row[0] != State.DEAD:
                    raise InvalidTransition(
                        f"job '{job_id}' is {row[0]}, not dead: only jobs in the DLQ can be "
                        "retried."
                    )
            return self._revive(conn, "id IN (SELECT value FROM json_each(:ids))", job_ids)

    def revive_all_dead(self) -> list[Job]:
        with self._write() as conn:
            return self._revive(conn, "state = 'dead'", [])

    def _revive(self, conn: sqlite3.Connection, where: str, ids: Sequence[str]) -> list[Job]:
        rows = conn.execute(
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at = :now, updated_at = :now "
            f"WHERE {where} RETURNING {JOB_COLUMNS}",
            {"now": self._clock(), "ids": json.dumps(list(ids))},
        ).fetchall()
        return [to_job(row) for row in rows]

    def finished_attempts(self) -> list[FinishedAttempt]:
        rows = self._read(
            "SELECT outcome, started_at, finished_at FROM attempts "
            "WHERE finished_at IS NOT NULL ORDER BY id"
        )
        return [
            FinishedAttempt(Outcome(o), to_datetime(start), to_datetime(end))
            for o, start, end in rows
        ]

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        return self._config(self._conn())

    def _config(self, conn: sqlite3.Connection) -> Config:
        with self._translate():
            return Config.from_stored(dict(conn.execute("SELECT key, value FROM config")))

    def set_config(self, name: str, value: float) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO config (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (name, repr(value)),
            )

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, host: str, pid: int, threads: int) -> None:
        with self._write() as conn:
            now = self._clock()
            conn.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, threads, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (worker_id, host, pid, threads, now, now),
            )

    def heartbeat(self, worker_id: str) -> bool | None:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE workers SET heartbeat_at = ? WHERE id = ? RETURNING stop_requested",
                (self._clock(), worker_id),
            ).fetchone()
        return None if row is None else bool(row[0])

    def stop_requested(self, worker_id: str) -> bool | None:
        rows = self._read("SELECT stop_requested FROM workers WHERE id = ?", (worker_id,))
        return bool(rows[0][0]) if rows else None

    def deregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def workers(self) -> list[WorkerInfo]:
        rows = self._read(
            "SELECT id, host, pid, threads, started_at, heartbeat_at, stop_requested "
            "FROM workers ORDER BY started_at, id"
        )
        return [
            WorkerInfo(wid, host, pid, threads, to_datetime(start), to_datetime(beat), bool(stop))
            for wid, host, pid, threads, start, beat, stop in rows
        ]

    def request_stop(self, worker_ids: Sequence[str] | None = None) -> int:
        with self._write() as conn:
            if worker_ids is None:
                cursor = conn.execute("UPDATE workers SET stop_requested = 1")
            else:
                cursor = conn.execute(
                    "UPDATE workers SET stop_requested = 1 "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(worker_ids)),),
                )
            return cursor.rowcount

    def prune_workers(self, silent_for: float) -> list[str]:
        cutoff = self._clock() - silent_for
        if not self._read("SELECT 1 FROM workers WHERE heartbeat_at < ? LIMIT 1", (cutoff,)):
            return []
        with self._write() as conn:
            rows = conn.execute(
                "DELETE FROM workers WHERE heartbeat_at < ? RETURNING id", (cutoff,)
            ).fetchall()
        return [row[0] for row in rows]
