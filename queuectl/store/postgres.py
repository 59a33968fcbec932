"""The shared store: one PostgreSQL database, for worker pools on many hosts.

Time is the server's: every run_at, lease and heartbeat decision uses ``now()`` (the start of
the current transaction), so hosts with skewed clocks agree. Tests may pass a ``clock``; its
time then goes into the same statements as the ``now`` parameter.

A claim is one statement (``pg_statements.CLAIM``): it picks the next claimable job with
``FOR UPDATE SKIP LOCKED`` (so concurrent claimers never wait for each other nor get the same
row), moves it to ``processing``, draws a new attempt id and starts the attempt row. Every other
write about a run matches the whole fence. Job control (cancel, edit, pause, prune ...) is in
``pg_control``.

Connections are per thread and in autocommit mode; a connection that broke (server restart,
network) is dropped and the next call opens a new one, so callers recover by retrying.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import conninfo

from queuectl.errors import InvalidInput, StoreError
from queuectl.model import (
    Claim,
    Config,
    Fence,
    Job,
    NewJob,
    QueueCopy,
    RunResult,
    Transition,
    WorkerInfo,
)
from queuectl.model.dependencies import check_parents, has_parents
from queuectl.store import dependencies, pg_schema, rows
from queuectl.store import pg_statements as sql
from queuectl.store.base import check_import_target, duplicate_job
from queuectl.store.connections import PerThread
from queuectl.store.dependencies import NO_PARENTS, POSTGRES, read_parents
from queuectl.store.pg_control import Execute, PostgresControl
from queuectl.store.pg_listen import Listener
from queuectl.store.pg_queries import PostgresQueries
from queuectl.store.secrets import redact, scrub, without_password

Connection = psycopg.Connection[tuple[Any, ...]]

NOW = sql.NOW
JOB_COLUMNS = rows.JOB_COLUMNS
#: libpq settings used unless the URL gives its own: fail fast on a dead host, notice a
#: silent network after about a minute, and name ourselves in pg_stat_activity
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "application_name": "queuectl",
}


class PostgresStore(PostgresQueries, PostgresControl):
    """A queue in the ``queuectl`` schema of one PostgreSQL database."""

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        self.location = redact(url)
        self._url = url
        try:
            given = conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            # libpq quotes what it could not parse, which may be the password itself.
            reason = scrub(str(exc).split(" after ")[0].strip(), url, "it could not be parsed")
            raise InvalidInput(f"invalid PostgreSQL location {self.location}: {reason}.") from None
        self._secret = str(given.get("password") or "") or None
        if self._secret:  # a password given in a form that redact() does not know
            self.location = self.location.replace(self._secret, "***")
        self.location_for_jobs = without_password(url)
        defaults = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
        self._conninfo = conninfo.make_conninfo(url, **defaults)
        self._clock = clock
        self._listeners: list[Listener] = []
        self._conns: PerThread[Connection] = PerThread(self._open, Connection.close)
        try:
            with self._translate():
                pg_schema.prepare(self._conns.get())  # fail early, in the caller's thread
        except BaseException:
            self.close()
            raise

    # -- connections --------------------------------------------------------------------------

    def connect(self) -> Connection:
        """A new autocommit connection to the queue's database (raises psycopg errors)."""
        return psycopg.connect(self._conninfo, autocommit=True)

    def _open(self) -> Connection:
        with self._translate():
            return self.connect()

    def close(self) -> None:
        """Close every connection this store opened and stop its listeners."""
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        self._conns.close_all()

    def release(self) -> None:
        self._conns.release()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, pg_schema.TooNew, pg_schema.NotOurs) as exc:
            conn = self._conns.peek()
            if conn is not None and conn.closed:
                self._conns.release()  # broken: the next call connects again
            raise self._explain(exc) from exc

    def _explain(self, exc: BaseException) -> StoreError:
        """The error to show for ``exc``: what went wrong, never the password."""
        return pg_schema.explain(exc, self.location, self._url, self._secret)

    def _params(self, **params: Any) -> dict[str, Any]:
        """Statement parameters, with the test clock's time as ``now`` (None: the server's)."""
        return {"now": None if self._clock is None else self.now(), **params}

    def _run(self, statement: str, /, **params: Any) -> list[tuple[Any, ...]]:
        with self._translate():
            cursor = self._conns.get().execute(statement, self._params(**params))
            return cursor.fetchall() if cursor.description else []

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._translate():
            conn = self._conns.get()
            with conn.transaction():
                yield conn

    @contextmanager
    def consistent(self) -> Iterator[None]:
        conn = self._conns.get()
        outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._transaction():
            if outermost:  # one snapshot for every statement of the block
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    @contextmanager
    def _atomic(self) -> Iterator[Execute]:
        with self._transaction() as conn:
            yield self._runner(conn)

    def now(self) -> datetime:
        if self._clock is not None:
            return rows.to_datetime(self._clock())
        return rows.in_utc(self._run("SELECT now()")[0][0])

    def watch(self, notify: Callable[[], None]) -> Callable[[], None]:
        listener = Listener(self.connect, notify, self._explain)
        self._listeners.append(listener)
        listener.start()

        def unwatch() -> None:
            listener.stop()
            listener.join()

        return unwatch

    # -- jobs ---------------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        if any(job.id is None for job in jobs):
            raise ValueError("enqueue needs jobs with ids")
        if not jobs:
            return []
        if not has_parents(jobs):
            return self._enqueue(jobs, False)
        check_parents(jobs)
        # Its parents' rows are locked in id order, yet a pool's finish (whose trigger locks
        # the children of the job it ends) may hold one of them: PostgreSQL then stops one of
        # the two, which changed nothing, and this tries again.
        return self._again_if_deadlocked(lambda: self._enqueue(jobs, True))

    def _enqueue(self, jobs: Sequence[NewJob], dependent: bool) -> list[Job]:
        with self._translate():
            conn = self._conns.get()
            try:
                with conn.transaction():
                    config = self._config(conn)
                    parents = NO_PARENTS
                    if dependent:
                        parents = read_parents(self._runner(conn), POSTGRES, jobs)
                    cursor = conn.execute(
                        sql.ENQUEUE, self._params(**sql.enqueue_params(jobs, config, parents))
                    )
                    by_id = {job.id: job for job in map(self._job, cursor.fetchall())}
                    if dependent:
                        conn.execute(sql.EDGES, sql.edge_params(dependencies.edges(parents)))
                return [by_id[job.id] for job in jobs if job.id is not None]
            except psycopg.errors.UniqueViolation as exc:  # rolled back: nothing was inserted
                found = re.search(r"\(id\)=\((.*)\) already exists", exc.diag.message_detail or "")
                raise duplicate_job(found.group(1) if found else str(jobs[0].id)) from None

    def _runner(self, conn: Connection) -> Execute:
        """A function that runs statements on ``conn`` (with the store's clock as ``now``)."""

        def run(statement: str, /, **params: Any) -> list[tuple[Any, ...]]:
            cursor = conn.execute(statement, self._params(**params))
            return cursor.fetchall() if cursor.description else []

        return run

    def claim(self, worker_id: str, lease_seconds: float) -> Claim | None:
        found = self._run(sql.CLAIM, claimer=worker_id, lease=float(lease_seconds))
        return rows.to_claim(found[0], rows.in_utc) if found else None

    def finish_and_claim(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        worker_id: str,
        lease_seconds: float,
    ) -> tuple[bool, Claim | None]:
        row = self._run(
            sql.FINISH_AND_CLAIM,
            **sql.finish_params(fence, result, transition),
            claimer=worker_id,
            lease=float(lease_seconds),
        )[0]
        recorded, job = row[0], row[1:]
        return recorded, None if job[0] is None else rows.to_claim(job, rows.in_utc)

    def renew(self, fences: Sequence[Fence], lease_seconds: float) -> set[int]:
        if not fences:
            return set()
        found = self._run(sql.RENEW, lease=float(lease_seconds), **sql.fence_params(fences))
        return {row[0] for row in found}

    def finish(
        self,
        fence: Fence,
        result: RunResult,
        transition: Transition,
        *,
        only_if_expired: bool = False,
    ) -> bool:
        found = self._run(
            sql.FINISH_IF_EXPIRED if only_if_expired else sql.FINISH,
            **sql.finish_params(fence, result, transition),
        )
        return bool(found)

    def expired(self) -> list[Claim]:
        found = self._run(
            f"SELECT {rows.CLAIM_COLUMNS.format(attempts='queuectl.attempts')} "
            f"FROM queuectl.jobs WHERE state = 'processing' AND lease_until < {NOW}"
        )
        return [rows.to_claim(row, rows.in_utc) for row in found]

    def import_copy(self, copy: QueueCopy) -> None:
        with self._transaction() as conn, conn.cursor() as cursor:
            # Taken first, so that a concurrent enqueue cannot slip in after the check.
            cursor.execute("LOCK TABLE queuectl.jobs IN EXCLUSIVE MODE")
            present = cursor.execute("SELECT count(*) FROM queuectl.jobs").fetchone()
            check_import_target(copy, present[0] if present else 0, self.location)
            # COPY: one statement per table, so the statement triggers run once, not per row.
            with cursor.copy(f"COPY queuectl.jobs ({rows.JOB_COPY_COLUMNS}) FROM STDIN") as rows_in:
                for job in copy.jobs:
                    rows_in.write_row(rows.job_values(job, lambda moment: moment))
            columns = rows.ATTEMPT_COLUMNS
            with cursor.copy(f"COPY queuectl.attempts ({columns}) FROM STDIN") as rows_in:
                for attempt in copy.attempts:
                    rows_in.write_row(rows.attempt_values(attempt, lambda moment: moment))
            cursor.execute(sql.EDGES, sql.edge_params(copy.edges))
            cursor.execute(
                "UPDATE queuectl.jobs SET has_children = true "
                "WHERE id IN (SELECT parent FROM queuectl.job_edges)"
            )
            for name, value in copy.config.as_dict().items():
                self._set_config(conn, name, value)

    def _job(self, row: Sequence[Any] | None) -> Job:
        assert row is not None
        return rows.to_job(row, rows.in_utc)

    # -- configuration ------------------------------------------------------------------------

    def config(self) -> Config:
        with self._translate():
            return self._config(self._conns.get())

    def _config(self, conn: Connection) -> Config:
        found = conn.execute("SELECT key, value FROM queuectl.config").fetchall()
        return Config.from_stored(dict(found))

    def set_config(self, name: str, value: float | str) -> None:
        with self._translate():
            self._set_config(self._conns.get(), name, value)

    def _set_config(self, conn: Connection, name: str, value: float | str) -> None:
        conn.execute(
            "INSERT INTO queuectl.config (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (name, str(value)),
        )

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, host: str, pid: int, threads: int) -> None:
        self._run(
            "INSERT INTO queuectl.workers (id, host, pid, threads, started_at, heartbeat_at) "
            f"VALUES (%(id)s, %(host)s, %(pid)s, %(threads)s, {NOW}, {NOW}) "
            "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
            "threads = excluded.threads, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, stop_requested = false",
            id=worker_id,
            host=host,
            pid=pid,
            threads=threads,
        )

    def heartbeat(self, worker_id: str) -> bool | None:
        found = self._run(
            f"UPDATE queuectl.workers SET heartbeat_at = {NOW} WHERE id = %(id)s "
            "RETURNING stop_requested",
            id=worker_id,
        )
        return bool(found[0][0]) if found else None

    def stop_requested(self, worker_id: str) -> bool | None:
        found = self._run(
            "SELECT stop_requested FROM queuectl.workers WHERE id = %(id)s", id=worker_id
        )
        return bool(found[0][0]) if found else None

    def deregister_worker(self, worker_id: str) -> None:
        self._run("DELETE FROM queuectl.workers WHERE id = %(id)s", id=worker_id)

    def workers(self) -> list[WorkerInfo]:
        found = self._run(
            f"SELECT {rows.WORKER_COLUMNS} FROM queuectl.workers ORDER BY started_at, id"
        )
        return [rows.to_worker(row, rows.in_utc) for row in found]

    def request_stop(self, worker_ids: Sequence[str] | None = None) -> int:
        found = self._run(
            "UPDATE queuectl.workers SET stop_requested = true "
            "WHERE %(all)s OR id = ANY(%(ids)s::text[]) RETURNING id",
            all=worker_ids is None,
            ids=list(worker_ids or []),
        )
        return len(found)

    def prune_workers(self, silent_for: float) -> list[str]:
        found = self._run(
            "DELETE FROM queuectl.workers "
            f"WHERE heartbeat_at < {NOW} - %(silent)s * interval '1 second' RETURNING id",
            silent=float(silent_for),
        )
        return [row[0] for row in found]
