"""What users read from a PostgreSQL queue: jobs, attempts, counts, results, metrics' totals.

A base of ``PostgresStore`` (see there for connections and the clock). A ``JobFilter``
becomes the SQL of ``matching``: the group by its index, a tag by the JSON list of the job.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from queuectl.model import Attempt, Job, JobFilter, State
from queuectl.model.dependencies import Edge, Relatives
from queuectl.model.job import EVERY_JOB
from queuectl.model.metrics import AttemptSummary
from queuectl.store import dependencies, rows
from queuectl.store.base import (
    AttemptHistory,
    Store,
    first_started,
    job_not_found,
    runtime_bucket,
    search_pattern,
    to_history,
)
from queuectl.store.dependencies import POSTGRES
from queuectl.store.rows import Table

JOB_COLUMNS = rows.JOB_COLUMNS
Rows = list[tuple[Any, ...]]
#: a search ignores the case of ASCII letters only, as SQLite's LIKE does
_FOLD = {"upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "lower": "abcdefghijklmnopqrstuvwxyz"}
_ASCII_LOWER = str.maketrans(_FOLD["upper"], _FOLD["lower"])


def _epoch(column: str) -> str:
    """A ``timestamptz`` column as epoch seconds, as a ``Table`` holds times."""
    return f"extract(epoch FROM {column})::float8"


def matching(where: JobFilter, table: str = "jobs") -> tuple[str, dict[str, Any]]:
    """SQL conditions (each starting with AND) for the jobs ``where`` takes, and their
    parameters (``group``, ``tag``)."""
    sql, params = "", {}
    if where.group is not None:
        sql += f" AND {table}.job_group = %(group)s"
        params["group"] = where.group
    if where.tag is not None:
        sql += f" AND {table}.tags::jsonb ? %(tag)s"
        params["tag"] = where.tag
    return sql, params


class PostgresQueries(Store):
    """The read methods of the PostgreSQL store (a base of ``PostgresStore``)."""

    @abstractmethod
    def _run(self, statement: str, /, **params: Any) -> Rows:
        """Run one statement in a transaction of its own; its rows."""

    def get(self, job_id: str) -> Job:
        found = self._run(f"SELECT {JOB_COLUMNS} FROM queuectl.jobs WHERE id = %(id)s", id=job_id)
        if not found:
            raise job_not_found(job_id)
        return rows.to_job(found[0], rows.in_utc)

    def relatives(self, job_id: str) -> Relatives:
        with self.consistent():
            self.get(job_id)
            return dependencies.relatives(self._run, POSTGRES, job_id)

    def edges(self, group: str | None = None) -> list[Edge]:
        return dependencies.edge_list(self._run, POSTGRES, group)

    def jobs(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> list[Job]:
        conditions, params = matching(where)
        found = self._run(
            f"SELECT {JOB_COLUMNS} FROM queuectl.jobs jobs "
            f"WHERE (%(state)s::text IS NULL OR state = %(state)s::text){conditions} "
            "ORDER BY seq DESC LIMIT %(limit)s",
            state=state.value if state else None,
            limit=limit,
            **params,
        )
        return [rows.to_job(row, rows.in_utc) for row in found]

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
            conditions += " AND state = %(state)s"
            params["state"] = state.value
        if search:
            # ILIKE folds the case of every letter: ASCII ones only, as SQLite's LIKE does.
            conditions += (
                " AND (translate(id, %(upper)s, %(lower)s) LIKE %(search)s"
                " OR translate(command, %(upper)s, %(lower)s) LIKE %(search)s)"
            )
            params |= {"search": search_pattern(search.translate(_ASCII_LOWER)), **_FOLD}
        with self.consistent():
            if before is not None:
                found = self._run("SELECT seq FROM queuectl.jobs WHERE id = %(id)s", id=before)
                if not found:
                    raise job_not_found(before)
                conditions += " AND seq < %(before)s"
                params["before"] = found[0][0]
            page = self._run(
                f"SELECT {JOB_COLUMNS} FROM queuectl.jobs jobs WHERE true{conditions} "
                "ORDER BY seq DESC LIMIT %(limit)s",
                limit=limit,
                **params,
            )
        return [rows.to_job(row, rows.in_utc) for row in page]

    def attempt_history(
        self,
        since: datetime,
        bucket: float,
        bounds: Sequence[float],
        *,
        started: datetime,
        newest: int,
    ) -> AttemptHistory:
        runtime = "extract(epoch FROM finished_at - started_at)::float8"

        def first_from(n: int) -> tuple[int, float] | None:
            found = self._run(
                f"SELECT id, {_epoch('started_at')} FROM queuectl.attempts WHERE id >= %(n)s "
                "ORDER BY id LIMIT 1",
                n=n,
            )
            return (found[0][0], found[0][1]) if found else None

        with self.consistent():
            top = self._run("SELECT coalesce(max(id), 0) FROM queuectl.attempts")[0][0]
            low = first_started(first_from, top, started.timestamp())
            outcomes = self._run(
                "SELECT floor(extract(epoch FROM finished_at - %(since)s) / %(bucket)s)::int "
                "AS b, outcome, count(*) FROM queuectl.attempts "
                "WHERE id >= %(low)s AND finished_at >= %(since)s GROUP BY b, outcome",
                since=since,
                bucket=bucket,
                low=low,
            )
            runtimes = self._run(
                f"SELECT {runtime_bucket(runtime, bounds)} AS k, count(*), sum({runtime}) "
                "FROM (SELECT outcome, started_at, finished_at FROM queuectl.attempts "
                "ORDER BY id DESC LIMIT %(newest)s) newest WHERE outcome = 'completed' "
                "GROUP BY k",
                newest=newest,
            )
        return to_history(outcomes, runtimes, bounds)

    def waiting(self, limit: int, where: JobFilter = EVERY_JOB) -> list[Job]:
        conditions, params = matching(where)
        found = self._run(
            f"SELECT {JOB_COLUMNS} FROM queuectl.jobs jobs "
            f"WHERE state IN ('pending', 'failed'){conditions} "
            "ORDER BY priority DESC, run_at, seq LIMIT %(limit)s",
            limit=limit,
            **params,
        )
        return [rows.to_job(row, rows.in_utc) for row in found]

    def attempts(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> list[Attempt]:
        if job_id is not None:
            self.get(job_id)
        conditions, params = matching(where)
        chosen = ""
        if where and job_id is None:
            chosen = f" AND job_id IN (SELECT id FROM queuectl.jobs jobs WHERE true{conditions})"
        found = self._run(
            f"SELECT {rows.ATTEMPT_COLUMNS} FROM queuectl.attempts "
            f"WHERE (%(job)s::text IS NULL OR job_id = %(job)s::text){chosen} ORDER BY id",
            job=job_id,
            **params,
        )
        return [rows.to_attempt(row, rows.in_utc) for row in found]

    def counts(self, where: JobFilter = EVERY_JOB) -> dict[State, int]:
        found: dict[str, int]
        if where.tag is not None:
            conditions, params = matching(where)
            query = (
                f"SELECT state, count(*) FROM queuectl.jobs jobs WHERE true{conditions} "
                "GROUP BY state"
            )
            found = dict(self._run(query, **params))
        elif where.group is not None:
            found = dict(
                self._run(
                    "SELECT state, sum(n)::bigint FROM queuectl.group_counts "
                    "WHERE job_group = %(group)s GROUP BY state",
                    group=where.group,
                )
            )
        else:
            found = dict(
                self._run("SELECT state, sum(n)::bigint FROM queuectl.job_counts GROUP BY state")
            )
        return {state: found.get(state.value, 0) for state in State}

    def group_counts(self) -> dict[str, dict[State, int]]:
        query = rows.group_counts_query("queuectl.group_counts", "::bigint")
        return rows.to_group_counts(self._run(query))

    def job_table(
        self, state: State | None = None, limit: int | None = None, where: JobFilter = EVERY_JOB
    ) -> Table:
        conditions, params = matching(where, "j")
        return self._table(
            rows.JOB_TABLE,
            f"FROM queuectl.jobs j WHERE (%(state)s::text IS NULL OR j.state = %(state)s::text)"
            f"{conditions} ORDER BY j.seq DESC LIMIT %(limit)s",
            state=state.value if state else None,
            limit=limit,
            **params,
        )

    def attempt_table(self, job_id: str | None = None, where: JobFilter = EVERY_JOB) -> Table:
        conditions, params = matching(where, "j")
        if job_id is not None:
            self.get(job_id)
            conditions, params = " AND a.job_id = %(job)s", {"job": job_id}
        return self._table(
            rows.ATTEMPT_TABLE,
            "FROM queuectl.attempts a LEFT JOIN queuectl.jobs j ON j.id = a.job_id "
            f"WHERE true{conditions} ORDER BY a.id",
            **params,
        )

    def result_table(self, where: JobFilter = EVERY_JOB) -> Table:
        conditions, params = matching(where, "j")
        return self._table(
            rows.RESULT_TABLE,
            "FROM queuectl.jobs j LEFT JOIN queuectl.attempts a ON a.id = j.attempt_id "
            f"WHERE true{conditions} ORDER BY j.seq",
            **params,
        )

    def _table(self, columns: Sequence[str], source: str, **params: Any) -> Table:
        """A ``Table`` of ``columns`` read ``source`` (FROM and the rest)."""
        query = f"SELECT {rows.table_columns(columns, _epoch)} {source}"
        return rows.to_table(columns, self._run(query, **params))

    def attempt_summary(self, since: datetime, where: JobFilter = EVERY_JOB) -> AttemptSummary:
        runtime = "extract(epoch FROM finished_at - started_at)::float8"
        percentiles = "".join(
            f", percentile_cont({q}) WITHIN GROUP (ORDER BY {runtime}) {rows.COMPLETED}"
            for q in (0.5, 0.95)
        )
        conditions, params = matching(where)
        source = "queuectl.attempts"
        if where:
            chosen = f"SELECT id FROM queuectl.jobs jobs WHERE true{conditions}"
            source = f"(SELECT * FROM queuectl.attempts WHERE job_id IN ({chosen})) attempts"
        query = rows.attempt_totals(runtime, "%(since)s", source, percentiles)
        ((*totals, p50, p95),) = self._run(query, since=since, **params)
        return rows.to_summary(totals, p50, p95, rows.in_utc)
