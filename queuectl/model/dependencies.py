"""Dependencies between jobs: which parents a job waits for, under which rule, and what its
state is given its parents' states. Pure: both stores apply what this decides.

A job enqueued with parents starts ``blocked`` while any parent has not satisfied it, and
becomes ``pending`` (claimable) in the transaction that finishes its last parent. The rule says
what satisfies it:

- ``ok`` (the default): the parent completed. A parent that ends ``dead`` or ``cancelled``
  cancels the job ("parent X is dead"), and so, transitively, its own dependents under ``ok``.
- ``any``: the parent finished, whatever its outcome.

Retrying a parent re-arms the dependents its end cancelled (``Store.retry``). A parent that
has been pruned counts as satisfied: it was finished, and the jobs it cancelled stay so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from queuectl.errors import InvalidInput
from queuectl.model.job import FINISHED, NewJob, Rule, State

#: the most parents one job may name (a fan-in after a whole grid goes by ``after_group``)
MAX_PARENTS = 10_000


def satisfies(parent: State, rule: Rule) -> bool:
    """Whether a parent in state ``parent`` lets a dependent under ``rule`` go."""
    return parent is State.COMPLETED if rule is Rule.OK else parent in FINISHED


def blocks_for_good(parent: State, rule: Rule) -> bool:
    """Whether a parent in state ``parent`` cancels a dependent under ``rule``."""
    return rule is Rule.OK and parent in (State.DEAD, State.CANCELLED)


@dataclass(frozen=True)
class Standing:
    """A dependent's state given its parents': ``blocked`` with ``unmet`` parents left,
    ``pending``, or ``cancelled`` by the parent ``cancelled_by``, ``reason`` saying why."""

    state: State
    unmet: int = 0
    cancelled_by: str | None = None
    reason: str | None = None


def standing(rule: Rule, parents: Mapping[str, State | None]) -> Standing:
    """Where a job under ``rule`` stands, given each parent's state (``None``: pruned)."""
    unmet = 0
    for parent_id, state in parents.items():
        if state is None:
            continue
        if blocks_for_good(state, rule):
            return Standing(State.CANCELLED, 0, parent_id, cancelled_reason(parent_id, state))
        if not satisfies(state, rule):
            unmet += 1
    return Standing(State.BLOCKED if unmet else State.PENDING, unmet)


def cancelled_reason(parent_id: str, parent_state: str) -> str:
    """The last error of a dependent cancelled by its parent's end."""
    return f"parent {parent_id} is {parent_state}"


def validate_after(value: Any) -> tuple[str, ...]:
    """Parent ids: a list of ids, or one text of ids separated by commas."""
    from queuectl.model.parse import validate_id

    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise InvalidInput("after names no job: give parent ids, e.g. after=prepare,fetch.")
    if not isinstance(value, list | tuple):
        raise InvalidInput(
            f"after must be a list of job ids (or one text of ids separated by commas), "
            f"got {type(value).__name__}."
        )
    if len(value) > MAX_PARENTS:
        raise InvalidInput(
            f"after names {len(value)} jobs; at most {MAX_PARENTS} (use after_group for a "
            "whole group)."
        )
    return tuple(dict.fromkeys(validate_id(parent) for parent in value))


def validate_rule(value: Any) -> Rule:
    """``ok`` or ``any``."""
    try:
        return Rule(str(value).lower())
    except ValueError:
        raise InvalidInput(
            f"after_rule must be 'ok' (every parent completed) or 'any' (every parent "
            f"finished, whatever its outcome), not {value!r}."
        ) from None


def check_parents(jobs: Sequence[NewJob]) -> None:
    """Refuse a job that names itself as a parent, or names a job that comes after it in the
    same batch (parents exist before their children, so no cycle can be built)."""
    later = {job.id for job in jobs}
    for job in jobs:
        later.discard(job.id)
        if job.id in job.after:
            raise InvalidInput(
                f"job '{job.id}' names itself in after: a job cannot wait for itself."
            )
        ahead = [parent for parent in job.after if parent in later]
        if ahead:
            raise InvalidInput(
                f"job '{job.id}' waits for '{ahead[0]}', which comes after it in the batch: "
                "enqueue parents first."
            )


def has_parents(jobs: Iterable[NewJob]) -> bool:
    """Whether any of ``jobs`` waits for others."""
    return any(job.after or job.after_group is not None for job in jobs)


@dataclass(frozen=True)
class Relatives:
    """A job's parents and children with their states (a pruned parent's is ``None``), in
    enqueue order."""

    parents: dict[str, State | None]
    children: dict[str, State]


@dataclass(frozen=True)
class Edge:
    """A dependency: ``child`` waits for ``parent`` under ``rule``."""

    parent: str
    child: str
    parent_state: State | None
    child_state: State
    rule: Rule
