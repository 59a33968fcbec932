"""What users read from an SQLite queue: jobs, attempts, counts, results, the metrics' totals.

A mixin of ``SqliteStore`` (see there for connections and times). A ``JobFilter`` becomes the
SQL of ``matching``: the group by its index, a tag through ``json_each`` of the job's tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from queuectl.model import Attempt, Job, JobFilter, State
from queuectl.model.dependencies import Edge, Relatives
from queuectl.model.job import EVERY_JOB
from queuectl.model.metrics import AttemptSummary, quantile
from queuectl.store import dependencies, rows
from queuectl.store.base import (
    AttemptHistory,
    first_started,
    job_not_found,
    runtime_bucket,
    search_pattern,
    to_history,
)
from queuectl.store.dependencies import SQLITE
from queuectl.store.rows import Table
from queuectl.store.sqlite_connections import SqliteConnections


def matching(where: JobFilter, table: str = "jobs") -> tuple[str, dict[str, Any]]:
    """SQL conditions (joined by AND, starting with AND) for the jobs ``where`` takes, and
    their parameters (``:group``, ``:tag``)."""
    sql, params = "", {}
    if where.group is not None:
        sql += f" AND {table}.job_group = :group"
        params["group"] = where.group
    if where.tag is not None:
        sql += f" AND EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE value = :tag)"
        params["tag"] = where.tag
    return sql, params


class SqliteQueries:
    """The read methods of ``SqliteStore``."""

    _db: SqliteConnections

    @contextmanager
    def consistent(self) -> Iterator[None]:
        with self._db.snapshot():
            yield

    def get(self, job_id: str) -> Job:
        found = self._db.read(f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not found:
            raise job_not_found(job_id)
        return rows.to_job(found[0])

    def jobs(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> list[Job]:
        conditions, params = matching(where)
        if state:
            conditions += " AND state = :state"
            params["state"] = state.value
        found = self._db.read(
            f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE 1{conditions} "
            "ORDER BY seq DESC LIMIT :limit",
            {**params, "limit": -1 if limit is None else limit},
        )
        return [rows.to_job(row) for row in found]

    def job_page(
        self,
        state: State | None,
        limit: int | None,
        where: JobFilter = EVERY_JOB,
        *,
        before: str | None = None,
        search: str | None = None,
    ) -> list[Job]:
        conditions, params = matching(where)
        if state:
            conditions += " AND state = :state"
            params["state"] = state.value
        if search:
            conditions += " AND (id LIKE :search ESCAPE '\\' OR command LIKE :search ESCAPE '\\')"
            params["search"] = search_pattern(search)
        with self._db.snapshot():
            if before is not None:
                found = self._db.read("SELECT seq FROM jobs WHERE id = ?", (before,))
                if not found:
                    raise job_not_found(before)
                conditions += " AND seq < :before"
                params["before"] = found[0][0]
            page = self._db.read(
                f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE 1{conditions} "
                "ORDER BY seq DESC LIMIT :limit",
                {**params, "limit": -1 if limit is None else limit},
            )
        return [rows.to_job(row) for row in page]

    def attempt_history(
        self,
        since: datetime,
        bucket: float,
        bounds: Sequence[float],
        *,
        started: datetime,
        newest: int,
    ) -> AttemptHistory:
        runtime = "(finished_at - started_at)"

        def first_from(n: int) -> tuple[int, float] | None:
            found = self._db.read(
                "SELECT id, started_at FROM attempts WHERE id >= ? ORDER BY id LIMIT 1", (n,)
            )
            return (found[0][0], found[0][1]) if found else None

        with self._db.snapshot():
            top = self._db.read("SELECT coalesce(max(id), 0) FROM attempts")[0][0]
            low = first_started(first_from, top, started.timestamp())
            outcomes = self._db.read(
                "SELECT CAST((finished_at - :since) / :bucket AS INTEGER) AS b, outcome, "
                "count(*) FROM attempts WHERE id >= :low AND finished_at >= :since "
                "GROUP BY b, outcome",
                {"since": since.timestamp(), "bucket": bucket, "low": low},
            )
            runtimes = self._db.read(
                f"SELECT {runtime_bucket(runtime, bounds)} AS k, count(*), sum({runtime}) "
                "FROM (SELECT outcome, started_at, finished_at FROM attempts "
                "ORDER BY id DESC LIMIT :newest) WHERE outcome = 'completed' GROUP BY k",
                {"newest": newest},
            )
        return to_history(outcomes, runtimes, bounds)

    def waiting(self, limit: int, where: JobFilter = EVERY_JOB) -> list[Job]:
        conditions, params = matching(where)
        # The claim's own index, read in its order; with a filter, whatever SQLite picks.
        source = "jobs" if where else "jobs INDEXED BY jobs_claimable"
        found = self._db.read(
            f"SELECT {rows.JOB_COLUMNS} FROM {source} WHERE state IN ('pending', 'failed')"
            f"{conditions} ORDER BY priority DESC, run_at, seq LIMIT :limit",
            {**params, "limit": limit},
        )
        return [rows.to_job(row) for row in found]

    def attempts(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> list[Attempt]:
        if job_id is not None:
            self.get(job_id)
            found = self._db.read(
                f"SELECT {rows.ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY id",
                (job_id,),
            )
        elif where:
            conditions, params = matching(where)
            found = self._db.read(
                f"SELECT {rows.ATTEMPT_COLUMNS} FROM attempts WHERE job_id IN "
                f"(SELECT id FROM jobs WHERE 1{conditions}) ORDER BY id",
                params,
            )
        else:
            found = self._db.read(f"SELECT {rows.ATTEMPT_COLUMNS} FROM attempts ORDER BY id")
        return [rows.to_attempt(row) for row in found]

    def relatives(self, job_id: str) -> Relatives:
        with self._db.snapshot():
            self.get(job_id)
            return dependencies.relatives(self._reader, SQLITE, job_id)

    def edges(self, group: str | None = None) -> list[Edge]:
        return dependencies.edge_list(self._reader, SQLITE, group)

    def _reader(self, statement: str, /, **params: Any) -> list[Any]:
        return self._db.read(statement, params)

    def counts(self, where: JobFilter = EVERY_JOB) -> dict[State, int]:
        if where.tag is not None:
            conditions, params = matching(where)
            query = f"SELECT state, count(*) FROM jobs WHERE 1{conditions} GROUP BY state"
            found = dict(self._db.read(query, params))
        elif where.group is not None:
            found = dict(
                self._db.read(
                    "SELECT state, n FROM group_counts WHERE job_group = ?", (where.group,)
                )
            )
        else:
            found = dict(self._db.read("SELECT state, n FROM job_counts"))
        return {state: found.get(state.value, 0) for state in State}

    def group_counts(self) -> dict[str, dict[State, int]]:
        return rows.to_group_counts(self._db.read(rows.group_counts_query("group_counts")))

    def job_table(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> Table:
        conditions, params = matching(where, "j")
        if state:
            conditions += " AND j.state = :state"
            params["state"] = state.value
        return self._table(
            rows.JOB_TABLE,
            f"FROM jobs j WHERE 1{conditions} ORDER BY j.seq DESC LIMIT :limit",
            {**params, "limit": -1 if limit is None else limit},
        )

    def attempt_table(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> Table:
        conditions, params = matching(where, "j")
        if job_id is not None:
            self.get(job_id)
            conditions, params = " AND a.job_id = :job", {"job": job_id}
        return self._table(
            rows.ATTEMPT_TABLE,
            f"FROM attempts a LEFT JOIN jobs j ON j.id = a.job_id WHERE 1{conditions} "
            "ORDER BY a.id",
            params,
        )

    def result_table(self, where: JobFilter = EVERY_JOB) -> Table:
        conditions, params = matching(where, "j")
        return self._table(
            rows.RESULT_TABLE,
            f"FROM jobs j LEFT JOIN attempts a ON a.id = j.attempt_id WHERE 1{conditions} "
            "ORDER BY j.seq",
            params,
        )

    def _table(self, columns: Sequence[str], source: str, params: dict[str, Any]) -> Table:
        """A ``Table`` of ``columns`` read ``source`` (FROM and the rest); times are kept
        as epoch seconds already."""
        query = f"SELECT {rows.table_columns(columns, str)} {source}"
        return rows.to_table(columns, self._db.read(query, params))

    def attempt_summary(self, since: datetime, where: JobFilter = EVERY_JOB) -> AttemptSummary:
        runtime = "round(finished_at - started_at, 6)"  # in µs, as PostgreSQL and frames have it
        conditions, params = matching(where)
        source = "attempts"
        if where:
            chosen = f"SELECT id FROM jobs WHERE 1{conditions}"
            source = f"(SELECT * FROM attempts WHERE job_id IN ({chosen}))"
        with self._db.snapshot() as conn:
            query = rows.attempt_totals(runtime, ":since", source)
            totals = conn.execute(query, {**params, "since": since.timestamp()}).fetchone()
            # (sorting here is faster than SQLite's ORDER BY)
            ordered = sorted(
                row[0]
                for row in conn.execute(
                    f"SELECT {runtime} FROM {source} WHERE outcome = 'completed'", params
                )
            )
        return rows.to_summary(totals, quantile(ordered, 0.50), quantile(ordered, 0.95))
