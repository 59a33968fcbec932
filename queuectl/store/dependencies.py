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
            share="ORDER BY id FOR SHARE" if self.locks else "",
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
_PARENTS_OF = "SELECT child, parent FROM {edges} WHERE child {ids}"
# On PostgreSQL the jobs reconsidered and their parents are locked, in id order, before their
# states are read: a parent that finishes meanwhile waits, and its trigger then sees where its
# children stand now (it would otherwise skip a child that this transaction re-arms).
_LOCK = "SELECT id FROM {jobs} WHERE id {ids} {share}"
_STATES = "SELECT id, state FROM {jobs} WHERE id {ids}"
_RULES = "SELECT id, after_rule, unmet, cancelled_by FROM {jobs} WHERE id {ids}"
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
    ids = {job.id for job in jobs}
    groups: dict[str, list[str]] = {}
    named: dict[str, list[str]] = {}
    for position, job in enumerate(jobs):
        assert job.id is not None
        parents = list(job.after)
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
            parents += members
        if parents:
            named[job.id] = list(dict.fromkeys(parents))
    # Every parent outside the batch read and locked by one statement, in id order: two
    # enqueues naming the same parents never wait for each other in a circle.
    outside = sorted({parent for of in named.values() for parent in of} - ids)
    known = {
        parent: State(state)
        for parent, state in (
            run(dialect.sql(_MARK_PARENTS), ids=dialect.ids(outside)) if outside else []
        )
    }
    # A member of a group read above that is gone now was pruned meanwhile: not a parent.
    grouped = {member for listed in groups.values() for member in listed}
    missing = [parent for parent in outside if parent not in known and parent not in grouped]
    if missing:
        child = next(job_id for job_id, of in named.items() if missing[0] in of)
        raise NotFound(
            f"no job with id '{missing[0]}' to wait for (after of job '{child}'): nothing was "
            "enqueued."
        )
    batch: dict[str, State] = {}  # the jobs of the batch so far, in the state they start in
    of: dict[str, dict[str, State | None]] = {}
    for job in jobs:
        assert job.id is not None
        if job.id in named:
            of[job.id] = {
                parent: batch.get(parent) or known[parent]
                for parent in named[job.id]
                if parent in batch or parent in known
            }
        batch[job.id] = Parents(of).standing(job).state
    return Parents(of)


def batch_parent_ids(jobs: Sequence[NewJob], parents: Parents) -> set[str]:
    """The jobs of the batch that others of it wait for (they start with children)."""
    ids = {job.id for job in jobs}
    return {parent for of in parents.of.values() for parent in of if parent in ids}


def edges(parents: Parents) -> list[tuple[str, str]]:
    """The (parent, child) pairs to store."""
    return [(parent, child) for child, of in parents.of.items() for parent in of]


_ANY_EDGE = "SELECT 1 FROM {edges} LIMIT 1"


def any_edge(run: Run, dialect: Dialect) -> bool:
    """Whether any job of the queue waits for another (else a retry has nothing to check)."""
    return bool(run(dialect.sql(_ANY_EDGE)))


def stuck(run: Run, dialect: Dialect, candidates: Sequence[str]) -> dict[str, Standing]:
    """Which of the finished jobs ``candidates`` a retry must leave alone: those with a parent
    that is dead or cancelled (and not retried with them) under ``ok``, and so on down (a
    candidate waiting for one left alone is left alone too); where they stand."""
    parents, states, kept = _read(run, dialect, candidates)
    found: dict[str, Standing] = {}
    while True:
        retried = set(candidates) - set(found)
        more = {}
        for job_id in retried:
            rule = kept[job_id][0] if job_id in kept else None
            if rule is None:
                continue
            of = {
                parent: State.PENDING if parent in retried else states.get(parent)
                for parent in parents.get(job_id, ())
            }
            stands = standing(rule, of)
            if stands.state is State.CANCELLED:
                more[job_id] = stands
        if not more:
            return found
        found |= more


def refuse_stuck(found: dict[str, Standing]) -> None:
    """Refuse a retry of named jobs of which some cannot run (see ``stuck``).

    Raises:
        InvalidTransition: naming the first such job and its parent.
    """
    if found:
        job_id = sorted(found)[0]
        raise InvalidTransition(
            f"job '{job_id}' cannot run: {found[job_id].reason}. Retry that parent instead: "
            f"it re-arms '{job_id}'."
        )


def rearm(run: Run, dialect: Dialect, retried: Sequence[str]) -> dict[str, Standing]:
    """After ``retried`` were moved back to pending (none of them ``stuck``): block those
    whose parents have not all let them go, and re-arm, transitively, the dependents that a
    retried job's end had cancelled (or had let go, under ``any``, while they still waited
    for others). Returns where the retried jobs that changed stand now."""
    changed = {job_id: to for job_id, (_, to) in _reconsider(run, dialect, retried).items()}
    frontier = list(retried)
    while frontier:
        found = run(dialect.sql(_DEPENDENTS), ids=dialect.ids(frontier))
        moved = _reconsider(run, dialect, [row[0] for row in found])
        frontier = [
            job_id
            for job_id, (before, to) in moved.items()
            if before in FINISHED and to.state not in FINISHED
        ]
    # A retried job whose parent the loop re-armed waits for it again (pending -> blocked only:
    # nothing here ends a job).
    again = _reconsider(run, dialect, retried)
    return changed | {job_id: to for job_id, (_, to) in again.items()}


#: a job's rule (``None``: it has no parents), its unmet parents and the parent that
#: cancelled it
Kept = tuple[Rule | None, int, str | None]


def _read(
    run: Run, dialect: Dialect, ids: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, State], dict[str, Kept]]:
    """The parents of each job of ``ids``, the states of the jobs and their parents (locked
    first on PostgreSQL), and what each job of ``ids`` keeps about them."""
    parents: dict[str, list[str]] = {}
    for child, parent in run(dialect.sql(_PARENTS_OF), ids=dialect.ids(ids)):
        parents.setdefault(child, []).append(parent)
    everyone = list({*ids, *(parent for of in parents.values() for parent in of)})
    if dialect.locks:
        run(dialect.sql(_LOCK), ids=dialect.ids(everyone))
    states = {
        job_id: State(state)
        for job_id, state in run(dialect.sql(_STATES), ids=dialect.ids(everyone))
    }
    kept: dict[str, Kept] = {
        job_id: (None if rule is None else Rule(rule), unmet, by)
        for job_id, rule, unmet, by in run(dialect.sql(_RULES), ids=dialect.ids(ids))
    }
    return parents, states, kept


def _reconsider(
    run: Run, dialect: Dialect, ids: Sequence[str]
) -> dict[str, tuple[State, Standing]]:
    """Write where each job of ``ids`` that has parents stands now; return those that
    changed: their state before, and where they stand."""
    if not ids:
        return {}
    parents, states, kept = _read(run, dialect, ids)
    changed = {}
    for job_id, (rule, unmet, by) in kept.items():
        if rule is None:
            continue
        state = states[job_id]
        stands = standing(rule, {parent: states.get(parent) for parent in parents.get(job_id, ())})
        if (state, unmet, by) == (stands.state, stands.unmet, stands.cancelled_by):
            continue
        run(
            dialect.sql(_STAND),
            state=stands.state.value,
            unmet=stands.unmet,
            by=stands.cancelled_by,
            reason=stands.reason,
            id=job_id,
        )
        changed[job_id] = (state, stands)
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
