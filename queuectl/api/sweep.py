"""Parameter sweeps: a grid of jobs enqueued in one call, and the ``Sweep`` handle to watch,
stop, rerun and analyse it (``Queue`` inherits ``Sweeps``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from queuectl.errors import InvalidInput
from queuectl.model import Job, JobFilter, NewJob, State
from queuectl.model.params import grid, rows
from queuectl.model.parse import JOB_FIELDS, job_filter, new_job
from queuectl.model.status import QueueStatus
from queuectl.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from queuectl.api.queue import Queue
    from queuectl.panel import QueuePanel

#: keyword arguments of ``sweep`` that are job fields, not params
SWEEP_FIELDS = frozenset(JOB_FIELDS) - {"id", "command", "params", "group"}


def plan(
    command: str,
    axes: Mapping[str, Any],
    fields: Mapping[str, Any],
    *,
    group: str,
    zipped: bool = False,
    table: Any = None,
    limit: int,
) -> list[NewJob]:
    """The validated jobs of a sweep: one per combination of ``axes`` (a list per param; with
    ``zipped``, the n-th values together), or one per row of ``table`` (a DataFrame or
    mappings). Nothing is enqueued; any error names what to fix."""
    if table is not None:
        if axes:
            raise InvalidInput("give the params as lists or as rows of a table, not both.")
        records: Iterable[Mapping[str, Any]] = (
            table.to_dict("records") if hasattr(table, "to_dict") else table
        )
        chosen = rows(records, limit)
    else:
        chosen = grid(axes, zipped=zipped, limit=limit)
    template = {**fields, "command": command, "group": group}
    return [new_job({**template, "params": params}) for params in chosen]


@dataclass(frozen=True, repr=False)
class Sweep:
    """The jobs of one sweep (its group), from ``Queue.sweep``. Everything it reads covers the
    whole group: jobs enqueued later into that group count too."""

    queue: Queue
    group: str
    ids: tuple[str, ...]
    #: the id of the job that runs after the whole grid (``then``), in the group too
    then: str | None = None

    def __repr__(self) -> str:
        then = f" then {self.then!r}" if self.then else ""
        return f"<Sweep {self.group!r}: {len(self.ids)} jobs{then}>"

    def __len__(self) -> int:
        return len(self.ids)

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> bool:
        """Block until every job of the sweep has finished; False if ``timeout`` passed."""
        return self.queue.wait(timeout, progress=progress, group=self.group)

    def status(self) -> QueueStatus:
        """Counts per state of the sweep's jobs, and the queue's pools."""
        return self.queue.status(group=self.group)

    def jobs(self) -> pd.DataFrame:
        """The sweep's jobs as a DataFrame (newest first)."""
        return self.queue.jobs(group=self.group)

    def attempts(self) -> pd.DataFrame:
        """The attempt history of the sweep's jobs."""
        return self.queue.attempts(group=self.group)

    def results(self) -> pd.DataFrame:
        """One row per job of the grid: params, state, attempts, duration, then the result's
        keys (the ``then`` job is left out: it has no params)."""
        found = self.queue.results(group=self.group)
        return found.drop(index=self.then) if self.then in found.index else found

    def cancel(self, *, wait: bool = True) -> dict[str, State]:
        """Cancel every unfinished job of the sweep, running ones included."""
        return self.queue.cancel(group=self.group, wait=wait)

    def retry_failed(self) -> list[Job]:
        """Run the sweep's dead and cancelled jobs again."""
        return self.queue.retry(failed=True, group=self.group)

    def panel(self, interval: float = 1.0) -> QueuePanel:
        """A live panel of the sweep's jobs."""
        return self.queue.panel(interval, group=self.group)


class Sweeps:
    """``sweep`` for ``Queue``."""

    store: Store

    def sweep(
        self,
        command: str,
        *,
        group: str | None = None,
        zipped: bool = False,
        rows: Any = None,
        params: Mapping[str, Any] | None = None,
        then: str | None = None,
        **given: Any,
    ) -> Sweep:
        """Enqueue a grid of jobs in one transaction (all or none) and return its ``Sweep``.

        Keyword arguments that name job fields (``max_retries``, ``priority``, ``timeout``,
        ``delay``, ``run_at``, ``cwd``, ``env``, ``tags``) apply to every job; every other one
        is a param with a list (or range) of values: ``sweep("train --lr {lr} --seed {seed}",
        lr=[1e-3, 1e-2], seed=range(4))`` enqueues 8 jobs, every combination (the last param
        changing fastest). ``zipped=True`` pairs the n-th values instead; ``rows`` takes a
        DataFrame (or mappings) with one row of params per job; ``params`` gives params whose
        names are also field names.

        Each job runs its command with ``{name}`` replaced by its value, shell-quoted, and
        ``$QUEUECTL_PARAM_<NAME>`` set; literal braces are written ``{{`` and ``}}``.
        ``group`` (default: a generated ``sweep-...`` name) holds the jobs together. More
        jobs than the config key ``max_sweep`` is an error, as is an unknown placeholder or
        an empty list: nothing is enqueued then.

        ``then`` is a command to run once the whole grid has completed (an aggregation): a
        job of the group, enqueued in the same transaction with ``after_group`` the grid and
        the sweep's job fields; its id is ``Sweep.then``. If a grid job ends dead or
        cancelled it is cancelled too, and retrying that job re-arms it.
        """
        from queuectl.api.queue import generate_id

        fields = {name: value for name, value in given.items() if name in SWEEP_FIELDS}
        axes = {name: value for name, value in given.items() if name not in SWEEP_FIELDS}
        clash = sorted(set(axes) & set(params or {}))
        if clash:
            raise InvalidInput(f"param {clash[0]} is given twice (as a keyword and in params).")
        axes.update(params or {})
        name = job_filter(group).group or f"sweep-{generate_id()[:8]}"
        limit = self.store.config().max_sweep
        jobs = plan(command, axes, fields, group=name, zipped=zipped, table=rows, limit=limit)
        if then is not None:
            if sum(self.store.counts(JobFilter(group=name)).values()):
                raise InvalidInput(
                    f"group '{name}' has jobs already: then= would wait for them too. Give the "
                    "sweep a new group, or enqueue the job with after=[...] yourself."
                )
            jobs.append(new_job({**fields, "command": then, "group": name, "after_group": name}))
        queue = cast("Queue", self)
        enqueued = [job.id for job in queue.submit(jobs)]
        if then is None:
            return Sweep(queue, name, tuple(enqueued))
        return Sweep(queue, name, tuple(enqueued[:-1]), enqueued[-1])
