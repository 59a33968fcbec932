"""Job control on PostgreSQL: cancel, move to the DLQ, rerun, edit, pause, prune; and what a pool
reads and writes about a run besides its result (cancel requests, output so far).

``PostgresControl`` is the part of ``PostgresStore`` that implements these methods of the port;
the store gives it the means to run statements (``_run``, ``_atomic``). A method that checks the
jobs' states before it changes them locks their rows first (``FOR UPDATE``): a pool finishing
one of them meanwhile waits for the change, or the change sees its result, never half of both.

Cancel requests and resumes reach idle pools by the channel that tells them of claimable jobs
(``pg_schema.CHANNEL``): triggers send the notification, whoever makes the change.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from queuectl.errors import StoreError
from queuectl.model import Attempt, Fence, Job, JobChanges, JobFilter, RunResult, State
from queuectl.model.job import EVERY_JOB, WAITING
from queuectl.store import dependencies, pg_schema, rows
from queuectl.store import pg_statements as sql
from queuectl.store.base import (
    BURIED_ERROR,
    CANCELLED_ERROR,
    NOT_BURIABLE,
    NOT_CANCELLABLE,
    PAUSED_KEY,
    PAUSED_VALUE,
    Store,
    check_prunable,
    check_retryable,
    check_states,
    in_order,
    job_not_found,
    not_editable,
)
from queuectl.store.dependencies import POSTGRES
from queuectl.store.pg_queries import matching

NOW = sql.NOW
JOB_COLUMNS = rows.JOB_COLUMNS
#: held by the transaction that prunes, so that pools pruning on their own take turns with it
#: (a key of its own: the schema's lock must not wait for a long prune)
PRUNE_LOCK = pg_schema.ADVISORY_LOCK + 1

Rows = list[tuple[Any, ...]]
T = TypeVar("T")


class Execute(Protocol):
    """Runs one statement (with the store's clock as ``now``) and returns its rows."""

    def __call__(self, statement: str, /, **params: Any) -> Rows: ...


# In id order, as every statement that locks several jobs (``pg_statements.RENEW``): no two
# of them wait for each other in a circle.
LOCK_STATES = (
    "SELECT id, state FROM queuectl.jobs WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE"
)

RERUN = f"""
WITH chosen AS (
    SELECT seq FROM queuectl.jobs jobs WHERE {{where}} ORDER BY id FOR UPDATE
)
UPDATE queuectl.jobs SET state = 'pending', attempts = 0, run_at = {NOW}, updated_at = {NOW},
    cancel_requested = false
WHERE seq IN (SELECT seq FROM chosen)
RETURNING {JOB_COLUMNS}
"""

# Waiting jobs end at once; a running one gets a request, which its trigger announces.
CANCEL = f"""
UPDATE queuectl.jobs SET
    state = CASE WHEN state = 'processing' THEN state ELSE 'cancelled' END,
    last_error = CASE WHEN state = 'processing' THEN last_error ELSE %(error)s END,
    updated_at = CASE WHEN state = 'processing' THEN updated_at ELSE {NOW} END,
    cancel_requested = state = 'processing'
WHERE id = ANY(%(ids)s::text[])
RETURNING id, state
"""
# Cancels by group or tag: the waiting jobs, then (another transaction) the running ones, each
# set locked in id order (as RENEW locks running jobs). Locked together, a pool finishing a job
# of the set while it holds the next job it claimed could wait for them in a circle. A job
# claimed meanwhile is found running by the second statement; one that finished is left.
CANCEL_CHOSEN = f"""
WITH chosen AS (
    SELECT seq FROM queuectl.jobs jobs WHERE state IN ('blocked', 'pending', 'failed'){{where}}
    ORDER BY id FOR UPDATE
)
UPDATE queuectl.jobs SET state = 'cancelled', last_error = %(error)s, updated_at = {NOW}
WHERE seq IN (SELECT seq FROM chosen)
RETURNING id
"""
REQUEST_CHOSEN = """
WITH chosen AS (
    SELECT seq FROM queuectl.jobs jobs WHERE state = 'processing'{where} ORDER BY id FOR UPDATE
)
UPDATE queuectl.jobs SET cancel_requested = true WHERE seq IN (SELECT seq FROM chosen)
RETURNING id
"""

BURY = f"""
UPDATE queuectl.jobs SET state = 'dead', last_error = %(error)s, updated_at = {NOW}
WHERE id = ANY(%(ids)s::text[])
RETURNING {JOB_COLUMNS}
"""

# The state check is part of the one statement: a pool that claims the job between a check and
# a write cannot happen. run_at is always set (to itself, if unchanged), so that the trigger
# wakes the pools when the job is due.
EDIT = f"""
UPDATE queuectl.jobs SET
    command = COALESCE(%(command)s::text, command),
    max_retries = COALESCE(%(max_retries)s::integer, max_retries),
    priority = COALESCE(%(priority)s::integer, priority),
    timeout = COALESCE(%(timeout)s::double precision, timeout),
    run_at = COALESCE(%(run_at)s::timestamptz,
        {NOW} + make_interval(secs => %(delay)s::double precision), run_at),
    updated_at = {NOW}
WHERE id = %(id)s AND state IN ('blocked', 'pending', 'failed')
RETURNING {JOB_COLUMNS}
"""

PAUSE = (
    "INSERT INTO queuectl.config (key, value) VALUES (%(key)s, %(value)s) ON CONFLICT DO NOTHING"
)
RESUME = "DELETE FROM queuectl.config WHERE key = %(key)s"  # its trigger wakes the pools

_DOOMED = "state = ANY(%(states)s::text[]) AND updated_at < %(before)s"
# The attempts go by the ids the jobs' DELETE returns, and so do the edges to their parents (a
# pruned parent's edges stay: its children show it as pruned). A job retried meanwhile is not
# deleted (the DELETE checks its row again once the retry commits), and neither is its history.
# Without a limit nothing is sorted.
_PRUNE = f"""
WITH gone AS (
    DELETE FROM queuectl.jobs WHERE {_DOOMED} {{oldest}}
    RETURNING id
), gone_attempts AS (
    DELETE FROM queuectl.attempts a USING gone WHERE a.job_id = gone.id
), gone_children AS (
    DELETE FROM queuectl.job_edges e USING gone WHERE e.child = gone.id
)
SELECT count(*) FROM gone
"""
PRUNE = _PRUNE.format(oldest="")
# An array, not IN (subquery): the planner then fetches the chosen rows by their key instead of
# scanning the table a second time to join them.
PRUNE_OLDEST = _PRUNE.format(
    oldest=f"AND seq = ANY(ARRAY(SELECT seq FROM queuectl.jobs WHERE {_DOOMED} "
    "ORDER BY updated_at, seq LIMIT %(limit)s))"
)
PRUNABLE = f"SELECT count(*) FROM (SELECT FROM queuectl.jobs WHERE {_DOOMED} LIMIT %(limit)s) j"


# The counts of a group with no jobs left in a state add up to zero over the shards, yet stay
# rows (an enqueue adds in one shard, the claims subtract in others): after a prune, delete
# them, so that `status` reads the groups that have jobs. Writers wait the moment it takes:
# their count triggers would otherwise add to a row being deleted.
COMPACT_GROUP_COUNTS = (
    "LOCK TABLE queuectl.group_counts IN SHARE ROW EXCLUSIVE MODE",
    "DELETE FROM queuectl.group_counts c USING ("
    "SELECT job_group, state FROM queuectl.group_counts GROUP BY job_group, state "
    "HAVING sum(n) = 0) z WHERE c.job_group = z.job_group AND c.state = z.state",
)


#: PostgreSQL's SQLSTATE of a statement it stopped to break a deadlock
DEADLOCK_DETECTED = "40P01"


class PostgresControl(Store):
    """The control methods of the PostgreSQL store (a base of ``PostgresStore``)."""

    @abstractmethod
    def _run(self, statement: str, /, **params: Any) -> Rows:
        """Run one statement in a transaction of its own; its rows."""

    @abstractmethod
    def _atomic(self) -> AbstractContextManager[Execute]:
        """A transaction on this thread's connection, as a function that runs statements in
        it; committed when the block ends, rolled back if it raises."""

    def retry(self, job_ids: Sequence[str], states: Collection[State] = (State.DEAD,)) -> list[Job]:
        def rerun() -> list[Job]:
            with self._atomic() as run:
                check_retryable(job_ids, dict(run(LOCK_STATES, ids=list(job_ids))), states)
                return self._rerun(run, "id = ANY(%(ids)s::text[])", ids=list(job_ids))

        return in_order(job_ids, self._again_if_deadlocked(rerun))

    def retry_where(self, states: Collection[State], where: JobFilter = EVERY_JOB) -> list[Job]:
        check_retryable([], {}, states)
        conditions, params = matching(where)
        chosen = f"state = ANY(%(states)s::text[]){conditions}"
        states_ = [state.value for state in states]

        def rerun() -> list[Job]:
            with self._atomic() as run:
                return self._rerun(run, chosen, states=states_, **params)

        return self._again_if_deadlocked(rerun)

    def _rerun(self, run: Execute, where: str, **params: Any) -> list[Job]:
        """Move the finished jobs ``where`` takes back to pending (with ``ids``: the jobs the
        user named), then put them and their dependents where their parents say. Jobs whose
        parent is still dead or cancelled stay as they are: refused when named, left out of a
        bulk retry (not written, so no trigger sees them move)."""
        linked = dependencies.any_edge(run, POSTGRES)
        if linked:
            locked = f"SELECT id FROM queuectl.jobs jobs WHERE {where} ORDER BY id FOR UPDATE"
            candidates = [row[0] for row in run(locked, **params)]
            left = dependencies.stuck(run, POSTGRES, candidates)
            if "ids" in params:
                dependencies.refuse_stuck(left)
            where = "id = ANY(%(ids)s::text[])"
            params = {"ids": [c for c in candidates if c not in left]}
        jobs = _jobs(run(RERUN.format(where=where), **params))
        if not linked:
            return jobs
        return dependencies.retried(jobs, dependencies.rearm(run, POSTGRES, [j.id for j in jobs]))

    def _again_if_deadlocked(self, work: Callable[[], T]) -> T:
        """Do ``work``, which changes the jobs a filter chose, again if PostgreSQL ended it
        to break a deadlock (it changed nothing then). Its statements lock their rows in id
        order, yet a pool finishing a job of them and claiming the next one in one statement
        may still hold one and wait for another; one of the two is then stopped, and this
        retries it (a pool retries its finish)."""
        for delay in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0):
            time.sleep(delay)
            try:
                return work()
            except StoreError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_DETECTED:
                    raise
        return work()

    def cancel(
        self,
        job_ids: Sequence[str] | None,
        where: JobFilter = EVERY_JOB,
        *,
        running: bool = False,
    ) -> dict[str, State]:
        if job_ids is None:
            conditions, params = matching(where)
            cancel = CANCEL_CHOSEN.format(where=conditions)
            after = {
                job_id: State.CANCELLED
                for (job_id,) in self._again_if_deadlocked(
                    lambda: self._run(cancel, **params, error=CANCELLED_ERROR)
                )
            }
            if running:
                request = REQUEST_CHOSEN.format(where=conditions)
                asked = self._again_if_deadlocked(lambda: self._run(request, **params))
                after.update((job_id, State.PROCESSING) for (job_id,) in asked)
            return after
        ids, allowed = list(job_ids), {*WAITING, State.PROCESSING}

        def cancel_named() -> dict[str, str]:
            with self._atomic() as run:
                check_states(job_ids, dict(run(LOCK_STATES, ids=ids)), allowed, NOT_CANCELLABLE)
                return dict(run(CANCEL, ids=ids, error=CANCELLED_ERROR))

        # (their dependents' rows are locked too, by the trigger: a pool may hold one)
        done = self._again_if_deadlocked(cancel_named)
        return {job_id: State(done[job_id]) for job_id in job_ids}

    def bury(self, job_ids: Sequence[str]) -> list[Job]:
        def bury_named() -> list[Job]:
            with self._atomic() as run:
                states: dict[str, str] = dict(run(LOCK_STATES, ids=list(job_ids)))
                check_states(job_ids, states, WAITING, NOT_BURIABLE)
                return _jobs(run(BURY, ids=list(job_ids), error=BURIED_ERROR))

        return in_order(job_ids, self._again_if_deadlocked(bury_named))

    def edit(self, job_id: str, changes: JobChanges) -> Job:
        edited = self._run(
            EDIT,
            id=job_id,
            command=changes.command,
            max_retries=None if changes.max_retries is None else int(changes.max_retries),
            priority=None if changes.priority is None else int(changes.priority),
            timeout=None if changes.timeout is None else float(changes.timeout),
            run_at=changes.run_at,
            delay=None if changes.delay is None else float(changes.delay),
        )
        if edited:
            return rows.to_job(edited[0], rows.in_utc)
        found = self._run("SELECT state FROM queuectl.jobs WHERE id = %(id)s", id=job_id)
        raise not_editable(job_id, found[0][0] if found else None)

    def set_paused(self, paused: bool) -> bool:
        statement = f"{PAUSE if paused else RESUME} RETURNING key"
        return bool(self._run(statement, key=PAUSED_KEY, value=PAUSED_VALUE))

    def paused(self) -> bool:
        found = self._run(
            "SELECT EXISTS (SELECT FROM queuectl.config WHERE key = %(key)s)", key=PAUSED_KEY
        )
        return bool(found[0][0])

    def prune(
        self,
        before: datetime,
        states: Collection[State],
        *,
        limit: int | None = None,
        dry_run: bool = False,
        skip_if_busy: bool = False,
    ) -> int:
        check_prunable(states)
        params: dict[str, Any] = dict(
            states=[state.value for state in states], before=before, limit=limit
        )
        if dry_run:  # a read: it neither waits for a pruner nor holds one up
            return int(self._run(PRUNABLE, **params)[0][0])
        with self._atomic() as run:
            if skip_if_busy:
                ((free,),) = run("SELECT pg_try_advisory_xact_lock(%(key)s)", key=PRUNE_LOCK)
                if not free:
                    return 0
            else:
                run("SELECT pg_advisory_xact_lock(%(key)s)", key=PRUNE_LOCK)
            ((deleted,),) = run(PRUNE if limit is None else PRUNE_OLDEST, **params)
        if deleted:
            with self._atomic() as run:
                for statement in COMPACT_GROUP_COUNTS:
                    run(statement)
        return int(deleted)

    def cancel_requests(self, fences: Sequence[Fence]) -> set[int]:
        if not fences:
            return set()
        return {row[0] for row in self._run(sql.CANCEL_REQUESTS, **sql.fence_params(fences))}

    def record_output(self, fence: Fence, result: RunResult) -> bool:
        return bool(self._run(sql.RECORD_OUTPUT, **sql.record_params(fence, result)))

    def last_attempt(self, job_id: str) -> Attempt | None:
        found = self._run(
            f"SELECT {rows.ATTEMPT_COLUMNS} FROM queuectl.attempts WHERE job_id = %(id)s "
            "ORDER BY id DESC LIMIT 1",
            id=job_id,
        )
        if found:
            return rows.to_attempt(found[0], rows.in_utc)
        if not self._run("SELECT 1 FROM queuectl.jobs WHERE id = %(id)s", id=job_id):
            raise job_not_found(job_id)
        return None


def _jobs(found: Rows) -> list[Job]:
    return [rows.to_job(row, rows.in_utc) for row in found]
