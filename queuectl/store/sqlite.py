"""The embedded store: one SQLite file in WAL mode, shared by every process on one machine.

Every write is one ``BEGIN IMMEDIATE`` transaction (see ``sqlite_connections``). Enqueues,
retries and configuration commit with ``synchronous=FULL``: once they return, they are on disk.
A worker's bookkeeping commits with ``synchronous=NORMAL`` (see ``SqliteConnections.write``).

Times are stored as UTC epoch seconds (REAL) and turned into aware datetimes on the way out.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from queuectl.model import (
    Claim,
    Config,
    Fence,
    Job,
    NewJob,
    QueueCopy,
    RunResult,
    State,
    Transition,
    WorkerInfo,
)
from queuectl.model.dependencies import check_parents, has_parents
from queuectl.store import dependencies, rows
from queuectl.store.base import (
    PAUSED_KEY,
    Store,
    check_import_target,
    duplicate_job,
)
from queuectl.store.dependencies import NO_PARENTS, SQLITE, batch_parent_ids, read_parents
from queuectl.store.file_safety import queue_file
from queuectl.store.sqlite_connections import SqliteConnections
from queuectl.store.sqlite_control import SqliteControl
from queuectl.store.sqlite_queries import SqliteQueries

#: the columns an enqueue writes
NEW_JOB_COLUMNS = (
    "id, command, state, max_retries, priority, run_at, timeout, created_at, updated_at, cwd, "
    "enqueued_from, env, job_group, tags, params, after_rule, unmet, cancelled_by, last_error, "
    "has_children"
)
#: after a copy: the jobs that others wait for
MARK_PARENTS = "UPDATE jobs SET has_children = 1 WHERE id IN (SELECT parent FROM job_edges)"
CLAIMABLE = "state IN ('pending', 'failed') AND run_at <= :now"
#: (uncorrelated: SQLite evaluates it once per statement, not per row)
NOT_PAUSED = f"NOT EXISTS (SELECT 1 FROM config WHERE key = '{PAUSED_KEY}')"
# Without statistics SQLite prefers the state index and sorts every pending job; the partial
# index of claimable jobs, in claim order, keeps a claim O(1) however long the history grows.
CLAIM_SOURCE = "jobs INDEXED BY jobs_claimable"


class SqliteStore(SqliteQueries, SqliteControl, Store):
    """A queue in one SQLite database file."""

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.location = self.location_for_jobs = str(self.path)
        self._clock = clock
        # SQLite opens the path with its folders' links resolved, checked safe (file_safety).
        self._db = SqliteConnections(queue_file(self.path))
        self._config_cache: tuple[tuple[tuple[str, str], ...] | None, Config] = (None, Config())
        self._db.connection()  # fail early, in the caller's thread, if the file is unusable

    def watch(self, notify: Callable[[], None]) -> Callable[[], None]:
        from queuectl.store.sqlite_watch import watch_commits

        return watch_commits(self._db.path, notify)

    def hold_writes(self) -> AbstractContextManager[None]:
        return self._db.hold_writes()

    @property
    def write_lock_seconds(self) -> float:
        """How long this process has held the file's write lock since the store was opened."""
        return self._db.lock_seconds

    def close(self) -> None:
        """Close every connection this store opened."""
        self._db.close()

    def release(self) -> None:
        self._db.release()

    def now(self) -> datetime:
        return rows.to_datetime(self._clock())

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        if any(job.id is None for job in jobs):
            raise ValueError("enqueue needs jobs with ids")
        dependent = has_parents(jobs)
        if dependent:
            check_parents(jobs)
        with self._db.write() as conn:
            now = self._clock()  # read under the lock: waiting for it must not age the job
            config = self._config(conn)
            parents = read_parents(self._runner(conn), SQLITE, jobs) if dependent else NO_PARENTS
            with_children = batch_parent_ids(jobs, parents) if dependent else set()
            # Edges left by a pruned parent whose id a new job takes are not its children (one
            # probe first: a queue without dependencies pays no more, measured 0.59 -> 0.66 x
            # the commit floor for an enqueue per call).
            if conn.execute("SELECT 1 FROM job_edges LIMIT 1").fetchone():
                conn.execute(
                    "DELETE FROM job_edges WHERE parent IN (SELECT value FROM json_each(?))",
                    (json.dumps([job.id for job in jobs]),),
                )
            inserted = []
            for job in jobs:
                stands = parents.standing(job)
                params = (
                    job.id,
                    job.command,
                    stands.state.value,
                    config.max_retries if job.max_retries is None else job.max_retries,
                    job.priority,
                    now + (job.delay or 0.0) if job.run_at is None else job.run_at.timestamp(),
                    config.job_timeout if job.timeout is None else job.timeout,
                    now,
                    now,
                    job.cwd,
                    job.enqueued_from,
                    rows.env_text(job.env),
                    job.group,
                    rows.json_text(job.tags),
                    rows.json_text(job.params),
                    job.after_rule.value if job.id in parents.of else None,
                    stands.unmet,
                    stands.cancelled_by,
                    stands.reason,
                    job.id in with_children,
                )
                try:
                    row = conn.execute(
                        f"INSERT INTO jobs ({NEW_JOB_COLUMNS}) VALUES {_marks(NEW_JOB_COLUMNS)} "
                        f"RETURNING {rows.JOB_COLUMNS}",
                        params,
                    ).fetchone()
                except sqlite3.IntegrityError:
                    raise duplicate_job(str(job.id)) from None
                inserted.append(rows.to_job(row))
            if dependent:
                conn.executemany(
                    "INSERT INTO job_edges (parent, child) VALUES (?, ?)",
                    dependencies.edges(parents),
                )
            return inserted

    def _runner(self, conn: sqlite3.Connection) -> dependencies.Run:
        """``conn``'s statements as the shared dependency code runs them (with the clock's
        time as ``:now``)."""

        def run(statement: str, /, **params: Any) -> list[tuple[Any, ...]]:
            return conn.execute(statement, {"now": self._clock(), **params}).fetchall()

        return run

    def claim(self, worker_id: str, lease_seconds: float) -> Claim | None:
        # A plain read first: an idle pool never takes the write lock.
        probe = {"now": self._clock()}
        query = f"SELECT 1 FROM {CLAIM_SOURCE} WHERE {CLAIMABLE} AND {NOT_PAUSED} LIMIT 1"
        if not self._db.read(query, probe):
            return None
        with self._db.write(durable=False) as conn:
            return self._claim(conn, worker_id, lease_seconds)

    def _claim(
        self, conn: sqlite3.Connection, worker_id: str, lease_seconds: float
    ) -> Claim | None:
        # The lease starts once the lock is ours, however long we waited for it.
        now = self._clock()
        row = conn.execute(
            "UPDATE jobs SET state = 'processing', attempts = attempts + 1, "
            "worker_id = :worker, lease_until = :lease, updated_at = :now "
            f"WHERE rowid = (SELECT rowid FROM {CLAIM_SOURCE} WHERE {CLAIMABLE} AND {NOT_PAUSED} "
            "ORDER BY priority DESC, run_at, seq LIMIT 1) "
            f"RETURNING {rows.JOB_COLUMNS}",
            {"worker": worker_id, "lease": now + lease_seconds, "now": now},
        ).fetchone()
        if row is None:
            return None
        attempt_id, number = conn.execute(
            "INSERT INTO attempts (job_id, number, worker_id, started_at) "
            # numbered on over the job's whole history: a retry does not start again at 1
            "VALUES (:job, "
            "(SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = :job), "
            ":worker, :now) "
            "RETURNING id, number",
            {"job": row[0], "worker": worker_id, "now": now},
        ).fetchone()
        conn.execute("UPDATE jobs SET attempt_id = ? WHERE id = ?", (attempt_id, row[0]))
        job = rows.to_job(row)
        return Claim(job, Fence(job.id, job.attempts, worker_id, attempt_id), number)

    def renew(self, fences: Sequence[Fence], lease_seconds: float) -> set[int]:
        if not fences:
            return set()
        held = set()
        with self._db.write(durable=False) as conn:
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
        with self._db.write(durable=False) as conn:
            return self._finish(conn, fence, result, transition, only_if_expired)

    def finish_and_claim(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        worker_id: str,
        lease_seconds: float,
    ) -> tuple[bool, Claim | None]:
        # One commit instead of two: the pages both touch (the job's, the indexes', the
        # counts') are written to the WAL once, and the lock is taken once.
        with self._db.write(durable=False) as conn:
            recorded = self._finish(conn, fence, result, transition, only_if_expired=False)
            return recorded, self._claim(conn, worker_id, lease_seconds)

    def _finish(
        self,
        conn: sqlite3.Connection,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        only_if_expired: bool,
    ) -> bool:
        now = self._clock()
        expiry = " AND lease_until < :now" if only_if_expired else ""
        # A run that ends while a cancel is pending ends the job, however it ended, unless it
        # completed: a failure is not retried. Its last_error stays the run's own reason.
        # (SET sees the row as it was before.)
        cancelled = "cancel_requested = 1 AND :state <> 'completed'"
        ended = conn.execute(
            f"UPDATE jobs SET state = CASE WHEN {cancelled} THEN 'cancelled' ELSE :state END, "
            f"run_at = CASE WHEN :state = 'failed' AND NOT ({cancelled}) "
            "THEN :now + :delay ELSE run_at END, "
            "last_error = COALESCE(:error, last_error), "
            "worker_id = NULL, lease_until = NULL, cancel_requested = 0, updated_at = :now "
            "WHERE id = :id AND attempts = :attempt AND worker_id = :worker "
            f"AND attempt_id = :attempt_id AND state = 'processing'{expiry} "
            "RETURNING state, has_children",
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
        ).fetchone()
        if ended is None:
            return False
        state, has_children = ended
        if has_children and state != State.FAILED:
            dependencies.settle(self._runner(conn), SQLITE, [(fence.job_id, state)])
        conn.execute(
            "UPDATE attempts SET finished_at = ?, exit_code = ?, outcome = ?, error = ?, "
            "stdout = ?, stderr = ?, stdout_bytes = ?, stderr_bytes = ?, result = ? WHERE id = ?",
            (
                now,
                result.exit_code,
                result.outcome.value,
                result.error,
                result.stdout,
                result.stderr,
                result.stdout_bytes,
                result.stderr_bytes,
                rows.json_text(result.result),
                fence.attempt_id,
            ),
        )
        return True

    def expired(self) -> list[Claim]:
        found = self._db.read(
            f"SELECT {rows.CLAIM_COLUMNS.format(attempts='attempts')} FROM jobs "
            "WHERE state = 'processing' AND lease_until < ?",
            (self._clock(),),
        )
        return [rows.to_claim(row) for row in found]

    def import_copy(self, copy: QueueCopy) -> None:
        with self._db.write() as conn:
            check_import_target(copy, self._count(conn), self.location)
            conn.executemany(
                f"INSERT INTO jobs ({rows.JOB_COPY_COLUMNS}) "
                f"VALUES {_marks(rows.JOB_COPY_COLUMNS)}",
                [rows.job_values(job) for job in copy.jobs],
            )
            conn.executemany(
                f"INSERT INTO attempts ({rows.ATTEMPT_COLUMNS}) "
                f"VALUES {_marks(rows.ATTEMPT_COLUMNS)}",
                [rows.attempt_values(attempt) for attempt in copy.attempts],
            )
            conn.executemany("INSERT INTO job_edges (parent, child) VALUES (?, ?)", copy.edges)
            conn.execute(MARK_PARENTS)
            for name, value in copy.config.as_dict().items():
                self._set_config(conn, name, value)

    def _count(self, conn: sqlite3.Connection) -> int:
        count: int = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return count

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        return self._config(self._db.connection())

    def _config(self, conn: sqlite3.Connection) -> Config:
        with self._db.translate():
            stored = tuple(conn.execute("SELECT key, value FROM config"))
        # Each enqueue reads the configuration, and parsing it costs more than the query.
        # (One tuple, swapped whole: threads share it.)
        cached_rows, cached = self._config_cache
        if stored == cached_rows:
            return cached
        config = Config.from_stored(dict(stored))
        self._config_cache = (stored, config)
        return config

    def set_config(self, name: str, value: float | str) -> None:
        with self._db.write() as conn:
            self._set_config(conn, name, value)

    def _set_config(self, conn: sqlite3.Connection, name: str, value: float | str) -> None:
        conn.execute(
            "INSERT INTO config (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (name, str(value)),
        )

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, host: str, pid: int, threads: int) -> None:
        with self._db.write(durable=False) as conn:
            now = self._clock()
            conn.execute(
                "INSERT OR REPLACE INTO workers (id, host, pid, threads, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (worker_id, host, pid, threads, now, now),
            )

    def heartbeat(self, worker_id: str) -> bool | None:
        with self._db.write(durable=False) as conn:
            row = conn.execute(
                "UPDATE workers SET heartbeat_at = ? WHERE id = ? RETURNING stop_requested",
                (self._clock(), worker_id),
            ).fetchone()
        return None if row is None else bool(row[0])

    def stop_requested(self, worker_id: str) -> bool | None:
        found = self._db.read("SELECT stop_requested FROM workers WHERE id = ?", (worker_id,))
        return bool(found[0][0]) if found else None

    def deregister_worker(self, worker_id: str) -> None:
        with self._db.write(durable=False) as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def workers(self) -> list[WorkerInfo]:
        found = self._db.read(f"SELECT {rows.WORKER_COLUMNS} FROM workers ORDER BY started_at, id")
        return [rows.to_worker(row) for row in found]

    def request_stop(self, worker_ids: Sequence[str] | None = None) -> int:
        with self._db.write() as conn:
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
        if not self._db.read("SELECT 1 FROM workers WHERE heartbeat_at < ? LIMIT 1", (cutoff,)):
            return []
        with self._db.write(durable=False) as conn:
            pruned = conn.execute(
                "DELETE FROM workers WHERE heartbeat_at < ? RETURNING id", (cutoff,)
            ).fetchall()
        return [row[0] for row in pruned]


def _marks(columns: str) -> str:
    """``(?, ?, …)``: one placeholder per column of ``columns`` (a comma-separated list)."""
    return f"({', '.join('?' * len(columns.split(',')))})"
