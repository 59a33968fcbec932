"""Dependencies in either store: a new job's parents read (and locked) in its enqueue's
transaction, and the dependents a retried job re-arms. The rules are ``model.dependencies``.

A parent's finish releases or cancels its dependents in the transaction that finishes it: on
SQLite ``settle`` (called by each write that ends jobs), on PostgreSQL a trigger
(``pg_schema``, version 6), since a pool's finish there is one statement. What is written here
runs on both: the statements are PostgreSQL's, turned into SQLite's by ``Dialect``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from queuectl.errors import InvalidTransition, NotFound
from queuectl.model import Job, NewJob, State
from queuectl.model.dependencies import Edge, Relatives, Standing, cancelled_reason, standing
from queuectl.model.job import FINISHED, Rule

Rows = list[tuple[Any, ...]]


class Run(Protocol):
    """Runs one statement of the open transaction and returns its rows."""

    def __call__(self, statement: str, /, **params: Any) -> Rows: ...


@dataclass(frozen=True)
class Dialect:
    """How a store spells what the statements here need: its tables, a list parameter, and
    whether it locks rows (PostgreSQL: other transactions write at the same time)."""

    prefix: str = ""
    locks: bool = False

    def sql(self, statement: str) -> str:
        """``statement`` for this store: ``{jobs}``, ``{edges}`` and ``{ids}`` (a list
        parameter named ``ids``) filled in, and SQLite's ``:name`` parameters."""
        filled = statement.format(
            jobs=f"{self.prefix}jobs",
            edges=f"{self.prefix}job_edges",
            ids="= ANY(%(ids)s::text[])"
            if self.locks
            else "IN (SELECT value FROM json_each(:ids))",
            lock="ORDER BY id FOR UPDATE" if self.locks else "",
            now="COALESCE(%(now)s::timestamptz, now())" if self.locks else ":now",
        )
        return filled if self.locks else re.sub(r"%\((\w+)\)s(::\w+(\[\])?)?", r":\1", filled)

    def ids(self, ids: Sequence[str]) -> Any:
        return list(ids) if self.locks else json.dumps(list(ids))


SQLITE = Dialect()
POSTGRES = Dialect(prefix="queuectl.", locks=True)

# The parents' rows are locked (PostgreSQL): a parent that finishes meanwhile waits until the
# child and its edges are in, and then finds them; one that finished first is seen finished.
_MARK_PARENTS = """
UPDATE {jobs} SET has_children = true WHERE id IN (SELECT id FROM {jobs} WHERE id {ids} {lock})
RETURNING id, state
"""
_GROUP_MEMBERS = "SELECT id FROM {jobs} WHERE job_group = %(group)s ORDER BY seq"
_PARENT_STATES = """
SELECT e.child, e.parent, p.state FROM {edges} e LEFT JOIN {jobs} p ON p.id = e.parent
WHERE e.child {ids}
"""
_RULES = "SELECT id, state, after_rule, unmet, cancelled_by FROM {jobs} WHERE id {ids}"
# Dependents a re-armed parent may change: those still blocked, and those its end cancelled.
_DEPENDENTS = """
SELECT DISTINCT c.id FROM {edges} e JOIN {jobs} c ON c.id = e.child
WHERE e.parent {ids}
    AND (c.state = 'blocked' OR (c.state = 'cancelled' AND c.cancelled_by = e.parent))
"""
# A re-armed job forgets the parent that had cancelled it; other errors stay.
_STAND = """
UPDATE {jobs} SET state = %(state)s, unmet = %(unmet)s, cancelled_by = %(by)s,
    last_error = COALESCE(%(reason)s, CASE WHEN cancelled_by IS NULL THEN last_error END),
    updated_at = {now}
WHERE id = %(id)s
"""


@dataclass(frozen=True)
class Parents:
    """The parents of each new job of a batch, with their states."""

    of: dict[str, dict[str, State | None]]

    def standing(self, job: NewJob) -> Standing:
        """Where ``job`` starts: pending when it has no parents."""
        if job.id not in self.of:
            return Standing(State.PENDING)
        return standing(job.after_rule, self.of[job.id])


#: the parents of a batch in which no job waits for another
NO_PARENTS = Parents({})


def read_parents(run: Run, dialect: Dialect, jobs: Sequence[NewJob]) -> Parents:
    """The parents of ``jobs`` (ids and groups, earlier jobs of the batch included), checked
    to exist and marked as having children; their states as of now, a parent of the batch
    itself taking the state it starts in.

    Raises:
        NotFound: a parent id is unknown, or ``after_group`` has no jobs (nothing is written:
            the caller's transaction is rolled back).
    """
    batch: dict[str, State] = {}  # the jobs of the batch so far, in the state they start in
    known: dict[str, State] = {}  # parents outside the batch, read (and locked) once
    groups: dict[str, list[str]] = {}
    of: dict[str, dict[str, State | None]] = {}
    for position, job in enumerate(jobs):
        assert job.id is not None
        named = list(job.after)
        if job.after_group is not None:
            if job.after_group not in groups:
                found = run(dialect.sql(_GROUP_MEMBERS), group=job.after_group)
                groups[job.after_group] = [row[0] for row in found]
            members = groups[job.after_group] + [
                str(other.id) for other in jobs[:position] if other.group == job.after_group
            ]
            if not members:
                raise NotFound(
                    f"group '{job.after_group}' has no jobs to wait for (after_group of job "
                    f"'{job.id}'): nothing was enqueued."
                )
            named += members
        if named:
            named = list(dict.fromkeys(named))
            unread = [parent for parent in named if parent not in batch and parent not in known]
            if unread:
                found_states = run(dialect.sql(_MARK_PARENTS), ids=dialect.ids(unread))
                known.update((parent, State(state)) for parent, state in found_states)
                missing = [parent for parent in unread if parent not in known]
                if missing:
                    raise NotFound(
                        f"job '{job.id}' waits for '{missing[0]}', which does not exist: "
                        "nothing was enqueued."
                    )
            of[job.id] = {parent: batch.get(parent) or known[parent] for parent in named}
        batch[job.id] = Parents(of).standing(job).state
    return Parents(of)


def batch_parent_ids(jobs: Sequence[NewJob], parents: Parents) -> set[str]:
    """The jobs of the batch that others of it wait for (they start with children)."""
    ids = {job.id for job in jobs}
    return {parent for of in parents.of.values() for parent in of if parent in ids}


def edges(parents: Parents) -> list[tuple[str, str]]:
    """The (parent, child) pairs to store."""
    return [(parent, child) for child, of in parents.of.items() for parent in of]


def rearm(run: Run, dialect: Dialect, retried: Sequence[str], named: bool) -> dict[str, Standing]:
    """After ``retried`` were moved back to pending: put those with parents where their
    parents' states say, and re-arm, transitively, the dependents that a retried job's end
    had cancelled (or had let go, under ``any``, while they still waited for others).

    Returns where the retried jobs that have parents stand now, when that is not pending:
    blocked, or cancelled because a parent is still dead or cancelled.

    Raises:
        InvalidTransition: ``named`` (the user named the jobs) and one of them would stay
            cancelled: the caller's transaction is rolled back, nothing changes.
    """
    changed = {job_id: to for job_id, (_, to) in _reconsider(run, dialect, retried).items()}
    stuck = sorted(job_id for job_id, to in changed.items() if to.state is State.CANCELLED)
    if stuck and named:
        raise InvalidTransition(
            f"job '{stuck[0]}' cannot run: {changed[stuck[0]].reason}. Retry that parent "
            f"instead: it re-arms '{stuck[0]}'."
        )
    frontier = [job_id for job_id in retried if job_id not in stuck]
    while frontier:
        found = run(dialect.sql(_DEPENDENTS), ids=dialect.ids(frontier))
        moved = _reconsider(run, dialect, [row[0] for row in found])
        frontier = [
            job_id
            for job_id, (before, to) in moved.items()
            if before in FINISHED and to.state not in FINISHED
        ]
    return changed


def _reconsider(
    run: Run, dialect: Dialect, ids: Sequence[str]
) -> dict[str, tuple[State, Standing]]:
    """Write where each job of ``ids`` that has parents stands now; return those that
    changed: their state before, and where they stand."""
    if not ids:
        return {}
    parents: dict[str, dict[str, State | None]] = {}
    for child, parent, state in run(dialect.sql(_PARENT_STATES), ids=dialect.ids(ids)):
        parents.setdefault(child, {})[parent] = None if state is None else State(state)
    changed = {}
    for job_id, state, rule, unmet, by in run(dialect.sql(_RULES), ids=dialect.ids(ids)):
        if rule is None:
            continue
        stands = standing(Rule(rule), parents.get(job_id, {}))
        if (state, unmet, by) == (stands.state.value, stands.unmet, stands.cancelled_by):
            continue
        run(
            dialect.sql(_STAND),
            state=stands.state.value,
            unmet=stands.unmet,
            by=stands.cancelled_by,
            reason=stands.reason,
            id=job_id,
        )
        changed[job_id] = (State(state), stands)
    return changed


# A parent's end: first its dependents under ``ok`` if it did not complete (cancelled), then
# every other dependent still blocked counts one parent less, and goes when none is left.
_CANCEL_DEPENDENTS = """
UPDATE {jobs} SET state = 'cancelled', unmet = 0, cancelled_by = %(parent)s,
    last_error = %(reason)s,
    updated_at = {now}
WHERE state = 'blocked' AND after_rule = 'ok'
    AND id IN (SELECT child FROM {edges} WHERE parent = %(parent)s)
RETURNING id, has_children
"""
_RELEASE_DEPENDENTS = """
UPDATE {jobs} SET unmet = unmet - 1,
    state = CASE WHEN unmet <= 1 THEN 'pending' ELSE 'blocked' END, updated_at = {now}
WHERE state = 'blocked' AND id IN (SELECT child FROM {edges} WHERE parent = %(parent)s)
"""


def settle(run: Run, dialect: Dialect, ended: Sequence[tuple[str, str]]) -> None:
    """Release or cancel the dependents of jobs that just finished (``(id, state)`` pairs,
    those that have children), transitively: what PostgreSQL's trigger does, for SQLite,
    whose writers call it in the transaction that ends the jobs."""
    frontier = list(ended)
    while frontier:
        next_ended = []
        for parent, state in frontier:
            if state != State.COMPLETED:
                cancelled = run(
                    dialect.sql(_CANCEL_DEPENDENTS),
                    parent=parent,
                    reason=cancelled_reason(parent, state),
                )
                next_ended += [(child, "cancelled") for child, has in cancelled if has]
            run(dialect.sql(_RELEASE_DEPENDENTS), parent=parent)
        frontier = next_ended


def retried(jobs: Sequence[Job], changed: dict[str, Standing]) -> list[Job]:
    """``jobs`` as a retry leaves them after ``rearm`` changed some (``changed``), without
    those that stay cancelled: they were not retried."""
    out = []
    for job in jobs:
        to = changed.get(job.id)
        if to is None:
            out.append(job)
        elif to.state is not State.CANCELLED:
            error = job.last_error if job.cancelled_by is None else None
            out.append(
                replace(job, state=to.state, unmet=to.unmet, cancelled_by=None, last_error=error)
            )
    return out


_RELATIVES = """
SELECT 'parent', e.parent, p.state, p.seq FROM {edges} e LEFT JOIN {jobs} p ON p.id = e.parent
WHERE e.child = %(id)s
UNION ALL
SELECT 'child', e.child, c.state, c.seq FROM {edges} e JOIN {jobs} c ON c.id = e.child
WHERE e.parent = %(id)s
ORDER BY 4
"""
_EDGES = """
SELECT e.parent, e.child, p.state, c.state, c.after_rule
FROM {edges} e JOIN {jobs} c ON c.id = e.child LEFT JOIN {jobs} p ON p.id = e.parent
WHERE %(group)s::text IS NULL OR c.job_group = %(group)s OR p.job_group = %(group)s
ORDER BY c.seq, p.seq
"""


def relatives(run: Run, dialect: Dialect, job_id: str) -> Relatives:
    """The parents and children of ``job_id`` (which the caller has found)."""
    parents: dict[str, State | None] = {}
    children: dict[str, State] = {}
    for kind, other, state, _ in run(dialect.sql(_RELATIVES), id=job_id):
        if kind == "parent":
            parents[other] = None if state is None else State(state)
        else:
            children[other] = State(state)
    return Relatives(parents, children)


def edge_list(run: Run, dialect: Dialect, group: str | None) -> list[Edge]:
    """Every dependency (``group``: those with the parent or the child in it), children in
    enqueue order."""
    return [
        Edge(parent, child, None if p is None else State(p), State(c), Rule(rule))
        for parent, child, p, c, rule in run(dialect.sql(_EDGES), group=group)
    ]
