"""What users do to jobs of an SQLite queue beyond enqueueing them: cancel, bury, edit, rerun,
pause, prune; and what a pool asks while a job runs (cancel requests, output so far).

A mixin of ``SqliteStore`` (see there for transactions, durability and times). Every change of
several jobs checks all of them first, inside the write transaction that changes them, so that
it is all or none.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from queuectl.model import Attempt, Fence, Job, JobChanges, JobFilter, RunResult, State
from queuectl.model.job import EVERY_JOB
from queuectl.model.job import WAITING as WAITING_STATES
from queuectl.store import dependencies, rows
from queuectl.store.base import (
    BURIED_ERROR,
    CANCELLED_ERROR,
    NOT_BURIABLE,
    NOT_CANCELLABLE,
    PAUSED_KEY,
    PAUSED_VALUE,
    check_prunable,
    check_retryable,
    check_states,
    in_order,
    job_not_found,
    not_editable,
)
from queuectl.store.dependencies import SQLITE
from queuectl.store.sqlite_connections import SqliteConnections
from queuectl.store.sqlite_queries import matching

#: the jobs named by a JSON list of ids bound to ``:ids``
NAMED = "id IN (SELECT value FROM json_each(:ids))"
WAITING = "state IN ('blocked', 'pending', 'failed')"
#: the condition of the partial index ``jobs_finished``, written as it is there: SQLite uses a
#: partial index only for a query whose WHERE clause contains its condition
FINISHED = "state IN ('completed', 'dead', 'cancelled')"
#: what a statement that ends jobs returns for ``_settle``
ENDED = "RETURNING id, has_children"
Rows = list[Any]
# (the edited fields that are stored as given; run_at and delay are worked out)
STORED_AS_GIVEN = ("command", "max_retries", "priority", "timeout")


class SqliteControl:
    """The control methods of ``SqliteStore``."""

    _db: SqliteConnections
    _clock: Callable[[], float]

    _runner: Callable[[sqlite3.Connection], dependencies.Run]

    def retry(self, job_ids: Sequence[str], states: Collection[State] = (State.DEAD,)) -> list[Job]:
        with self._db.write() as conn:
            check_retryable(job_ids, _states(conn, job_ids), states)
            return in_order(job_ids, self._retry(conn, NAMED, job_ids))

    def retry_where(self, states: Collection[State], where: JobFilter = EVERY_JOB) -> list[Job]:
        check_retryable([], {}, states)
        conditions, params = matching(where)
        chosen = f"state IN (SELECT value FROM json_each(:states)){conditions}"
        with self._db.write() as conn:
            return self._retry(conn, chosen, [], {**params, "states": _names(states)})

    def _retry(
        self,
        conn: sqlite3.Connection,
        where: str,
        ids: Sequence[str],
        params: dict[str, Any] | None = None,
    ) -> list[Job]:
        run = self._runner(conn)
        chosen = {"ids": json.dumps(list(ids)), **(params or {})}
        linked = dependencies.any_edge(run, SQLITE)
        if linked:
            # Jobs whose parent is still dead or cancelled stay as they are: refused when
            # named, left out of a bulk retry (and not written, nor reported).
            candidates = [
                row[0] for row in conn.execute(f"SELECT id FROM jobs WHERE {where}", chosen)
            ]
            left = dependencies.stuck(run, SQLITE, candidates)
            if ids:
                dependencies.refuse_stuck(left)
            where, chosen = NAMED, {"ids": json.dumps([c for c in candidates if c not in left])}
        retried = conn.execute(
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at = :now, updated_at = :now, "
            f"cancel_requested = 0 WHERE {where} RETURNING {rows.JOB_COLUMNS}",
            {"now": self._clock(), **chosen},
        ).fetchall()
        jobs = [rows.to_job(row) for row in retried]
        if not linked:
            return jobs
        return dependencies.retried(jobs, dependencies.rearm(run, SQLITE, [j.id for j in jobs]))

    def cancel(
        self,
        job_ids: Sequence[str] | None,
        where: JobFilter = EVERY_JOB,
        *,
        running: bool = False,
    ) -> dict[str, State]:
        with self._db.write() as conn:
            params = {"now": self._clock(), "error": CANCELLED_ERROR}
            cancel_waiting = (
                "UPDATE jobs SET state = 'cancelled', last_error = :error, updated_at = :now "
                f"WHERE {WAITING}"
            )
            if job_ids is None:
                conditions, chosen = matching(where)
                params.update(chosen)
                done = conn.execute(f"{cancel_waiting}{conditions} {ENDED}", params).fetchall()
                self._settle(conn, done, "cancelled")
                after = {row[0]: State.CANCELLED for row in done}
                if running:
                    asked = conn.execute(
                        "UPDATE jobs SET cancel_requested = 1 "
                        f"WHERE state = 'processing'{conditions} RETURNING id",
                        params,
                    )
                    after.update((row[0], State.PROCESSING) for row in asked.fetchall())
                return after
            states = _states(conn, job_ids)
            check_states(job_ids, states, {*WAITING_STATES, State.PROCESSING}, NOT_CANCELLABLE)
            named = {**params, "ids": json.dumps(list(job_ids))}
            done = conn.execute(f"{cancel_waiting} AND {NAMED} {ENDED}", named).fetchall()
            self._settle(conn, done, "cancelled")
            # A running job is stopped by its pool, which sees the request (cancel_requests);
            # the run's end (finish) then makes it cancelled.
            conn.execute(
                f"UPDATE jobs SET cancel_requested = 1 WHERE state = 'processing' AND {NAMED}",
                named,
            )
        return {
            job_id: State.PROCESSING if states[job_id] == State.PROCESSING else State.CANCELLED
            for job_id in job_ids
        }

    def bury(self, job_ids: Sequence[str]) -> list[Job]:
        with self._db.write() as conn:
            check_states(job_ids, _states(conn, job_ids), WAITING_STATES, NOT_BURIABLE)
            buried = conn.execute(
                "UPDATE jobs SET state = 'dead', last_error = :error, updated_at = :now "
                f"WHERE {NAMED} RETURNING {rows.JOB_COLUMNS}, has_children",
                {"now": self._clock(), "error": BURIED_ERROR, "ids": json.dumps(list(job_ids))},
            ).fetchall()
            self._settle(conn, [(row[0], row[-1]) for row in buried], "dead")
        return in_order(job_ids, [rows.to_job(row) for row in buried])

    def _settle(self, conn: sqlite3.Connection, ended: Rows, state: str) -> None:
        """Release or cancel the dependents of the jobs of ``ended`` (rows of id and
        has_children) that just ended in ``state``."""
        parents = [(row[0], state) for row in ended if row[1]]
        if parents:
            dependencies.settle(self._runner(conn), SQLITE, parents)

    def edit(self, job_id: str, changes: JobChanges) -> Job:
        with self._db.write() as conn:
            now = self._clock()
            params: dict[str, Any] = {"id": job_id, "now": now}
            sets = ["updated_at = :now"]
            for name in STORED_AS_GIVEN:
                value = getattr(changes, name)
                if value is not None:
                    sets.append(f"{name} = :{name}")
                    params[name] = value
            if changes.run_at is not None:
                sets.append("run_at = :run_at")
                params["run_at"] = rows.to_epoch(changes.run_at)
            elif changes.delay is not None:
                sets.append("run_at = :now + :delay")
                params["delay"] = changes.delay
            # The state is checked by the statement that writes, not by a read before it.
            row = conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id = :id AND {WAITING} "
                f"RETURNING {rows.JOB_COLUMNS}",
                params,
            ).fetchone()
            if row is not None:
                return rows.to_job(row)
            found = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        raise not_editable(job_id, None if found is None else found[0])

    def set_paused(self, paused: bool) -> bool:
        with self._db.write() as conn:
            if paused:
                cursor = conn.execute(
                    "INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    (PAUSED_KEY, PAUSED_VALUE),
                )
            else:
                cursor = conn.execute("DELETE FROM config WHERE key = ?", (PAUSED_KEY,))
            return cursor.rowcount == 1

    def paused(self) -> bool:
        return bool(self._db.read("SELECT 1 FROM config WHERE key = ?", (PAUSED_KEY,)))

    def prune(
        self,
        before: datetime,
        states: Collection[State],
        *,
        limit: int | None = None,
        dry_run: bool = False,
        skip_if_busy: bool = False,
    ) -> int:
        """See ``Store.prune``.

        ``skip_if_busy`` changes nothing here: the file's write lock lets one process prune
        at a time, and a pool that waited for it finds the jobs the other pruned gone. A
        prune that finds nothing to delete (a pool's usual case) takes no write lock at all.
        """
        check_prunable(states)
        params = {
            "before": rows.to_epoch(before),
            "states": _names(states),
            "limit": -1 if limit is None else limit,
        }
        where = (
            f"{FINISHED} AND state IN (SELECT value FROM json_each(:states)) "
            "AND updated_at < :before"
        )
        # The index holds (updated_at, seq): oldest first without sorting, and the same rows
        # in the same order for each statement of the transaction below.
        oldest = (
            f"FROM jobs INDEXED BY jobs_finished WHERE {where} ORDER BY updated_at, seq "
            "LIMIT :limit"
        )
        if dry_run:
            return int(self._db.read(f"SELECT count(*) FROM (SELECT 1 {oldest})", params)[0][0])
        if not self._db.read(
            f"SELECT 1 FROM jobs INDEXED BY jobs_finished WHERE {where} LIMIT 1", params
        ):
            return 0
        with self._db.write() as conn:
            conn.execute(f"DELETE FROM attempts WHERE job_id IN (SELECT id {oldest})", params)
            # (a pruned parent's edges stay: its children show it as pruned)
            conn.execute(f"DELETE FROM job_edges WHERE child IN (SELECT id {oldest})", params)
            cursor = conn.execute(f"DELETE FROM jobs WHERE seq IN (SELECT seq {oldest})", params)
            return cursor.rowcount

    def cancel_requests(self, fences: Sequence[Fence]) -> set[int]:
        if not fences:
            return set()
        # One lookup by id per fence: as cheap as the pool's lease renewal, and not a write.
        found = self._db.read(
            f"SELECT attempt_id FROM jobs WHERE {NAMED} AND cancel_requested = 1",
            {"ids": json.dumps([fence.job_id for fence in fences])},
        )
        return {row[0] for row in found} & {fence.attempt_id for fence in fences}

    def record_output(self, fence: Fence, result: RunResult) -> bool:
        with self._db.write(durable=False) as conn:
            cursor = conn.execute(
                "UPDATE attempts SET stdout = :stdout, stderr = :stderr, "
                "stdout_bytes = :stdout_bytes, stderr_bytes = :stderr_bytes "
                "WHERE id = :attempt_id AND finished_at IS NULL AND EXISTS (SELECT 1 FROM jobs "
                "WHERE id = :job AND attempts = :attempt AND worker_id = :worker "
                "AND attempt_id = :attempt_id AND state = 'processing')",
                {
                    "stdout": result.stdout,
                    "stderr": result.stderr,
                    "stdout_bytes": result.stdout_bytes,
                    "stderr_bytes": result.stderr_bytes,
                    "attempt_id": fence.attempt_id,
                    "job": fence.job_id,
                    "attempt": fence.attempt,
                    "worker": fence.worker_id,
                },
            )
            return cursor.rowcount == 1

    def last_attempt(self, job_id: str) -> Attempt | None:
        with self._db.snapshot() as conn:
            row = conn.execute(
                f"SELECT {rows.ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            known = (
                row is not None
                or conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
            )
        if not known:
            raise job_not_found(job_id)
        return None if row is None else rows.to_attempt(row)


def _names(states: Collection[State]) -> str:
    """States as the JSON list ``json_each`` reads."""
    return json.dumps(sorted(state.value for state in states))


def _states(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, str]:
    """The states of those of ``job_ids`` that exist."""
    found = conn.execute(
        f"SELECT id, state FROM jobs WHERE {NAMED}", {"ids": json.dumps(list(job_ids))}
    )
    return dict(found.fetchall())
