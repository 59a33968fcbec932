"""The API's control of jobs and of the queue: retry, cancel, move to the DLQ, edit, pause,
prune, and reading a job's output (``Queue`` inherits it)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from queuectl.errors import InvalidInput, NotFound
from queuectl.model import Attempt, Job, JobChanges, State
from queuectl.model.job import FINISHED
from queuectl.model.parse import (
    job_changes,
    job_filter,
    parse_duration,
    validate_state,
    validate_timeout,
)
from queuectl.store import Store
from queuectl.worker.inprocess import LocalPools

if TYPE_CHECKING:
    from queuectl.follow import Chunk


#: jobs deleted per transaction by ``prune`` (about a second of SQLite's write lock, at most)
PRUNE_BATCH = 10_000


class Control:
    """Control of jobs and of the queue, for ``Queue``."""

    store: Store
    _local: LocalPools

    def retry(
        self,
        *job_ids: str,
        all_dead: bool = False,
        dead_only: bool = False,
        failed: bool = False,
        group: str | None = None,
        tag: str | None = None,
    ) -> list[Job]:
        """Run finished jobs (completed, dead or cancelled) again: back to pending, due at
        once, attempts reset; their history stays. All or none.

        ``all_dead``: every dead job. ``failed``: every dead or cancelled job. Either may be
        narrowed to a ``group`` or ``tag``; a group or tag alone means ``failed`` (completed
        jobs are rerun by id only). ``dead_only``: refuse named jobs that are not dead (what
        ``dlq retry`` does).
        """
        where = job_filter(group, tag)
        if job_ids and (all_dead or failed or where):
            raise InvalidInput(
                "name the jobs to retry, or choose them by state/group/tag, not both."
            )
        if all_dead or failed or where:
            states = {State.DEAD} if all_dead else {State.DEAD, State.CANCELLED}
            retried = self.store.retry_where(states, where)
        elif not job_ids:
            raise InvalidInput("name the jobs to retry, or retry all dead (or failed) ones.")
        else:
            states = {State.DEAD} if dead_only else set(FINISHED)
            retried = self.store.retry(_unique(job_ids), tuple(states))
        self._local.wake()
        return retried

    def cancel(
        self,
        *job_ids: str,
        all_pending: bool = False,
        group: str | None = None,
        tag: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> dict[str, State]:
        """Cancel jobs, all or none; return each one's state afterwards.

        A pending or failed job is ``cancelled`` at once. A running one is stopped by its
        pool (SIGTERM to its process group, SIGKILL after a grace period), wherever it runs;
        with ``wait`` this waits for that (at most ``timeout`` seconds, by default the grace
        period and a few seconds more). Its state is then ``cancelled``, or ``completed`` if
        it finished first; ``processing`` if it is still stopping (its pool may be gone: it
        is cancelled once its lease runs out).

        ``all_pending``: every pending or failed job (of a ``group`` or ``tag``, if given).
        ``group`` or ``tag`` alone: every unfinished job of it, running ones included; its
        finished jobs are left as they are.

        Raises:
            NotFound: an id is unknown. InvalidTransition: a job is finished already.
        """
        where = job_filter(group, tag)
        if bool(job_ids) == (all_pending or bool(where)):
            raise InvalidInput(
                "name the jobs to cancel, or choose them (all pending, a group, a tag), not both."
            )
        timeout = validate_timeout(timeout)
        if job_ids:
            states = self.store.cancel(_unique(job_ids))
        else:
            states = self.store.cancel(None, where, running=not all_pending)
        running = [job_id for job_id, state in states.items() if state is State.PROCESSING]
        if running and wait:
            from queuectl.model.policy import KILL_GRACE

            deadline = time.monotonic() + (KILL_GRACE + 5.0 if timeout is None else timeout)
            while running and time.monotonic() < deadline:
                time.sleep(0.02)
                for job_id in list(running):
                    states[job_id] = self.store.get(job_id).state
                    if states[job_id] is not State.PROCESSING:
                        running.remove(job_id)
        return states

    def move_to_dlq(self, *job_ids: str) -> list[Job]:
        """Move pending or failed jobs straight to the dead letter queue; all or none."""
        if not job_ids:
            raise InvalidInput("name the pending or failed jobs to move to the DLQ.")
        return self.store.bury(_unique(job_ids))

    def edit(self, job_id: str, changes: JobChanges | None = None, **fields: Any) -> Job:
        """Change a pending or failed job: ``command``, ``priority``, ``run_at`` or ``delay``,
        ``max_retries``, ``timeout`` as keywords, validated here, or a ``JobChanges`` made by
        ``model.parse.job_changes`` (a front end validates before it opens the queue). A job
        claimed meanwhile is not changed (``InvalidTransition`` says so)."""
        edited = self.store.edit(job_id, changes or job_changes(fields))
        self._local.wake()
        return edited

    def pause(self) -> bool:
        """Stop every pool of the queue from starting jobs (running ones finish); kept until
        ``resume``, across restarts. Return whether it was running before."""
        return self.store.set_paused(True)

    def resume(self) -> bool:
        """Let pools start jobs again; return whether the queue was paused."""
        resumed = self.store.set_paused(False)
        self._local.wake()
        return resumed

    @property
    def paused(self) -> bool:
        """Whether the queue is paused."""
        return self.store.paused()

    def prune(
        self,
        older_than: float | str | timedelta,
        states: Iterable[State | str] | None = None,
        *,
        dry_run: bool = False,
    ) -> int:
        """Delete finished jobs (of ``states``; default: completed, dead and cancelled) that
        ended more than ``older_than`` ago (seconds, ``"30d"`` or a timedelta), with their
        attempts; return how many (with ``dry_run``: how many would be).

        It deletes ``PRUNE_BATCH`` jobs per transaction, oldest first: on SQLite a
        transaction holds the queue's write lock, and a million jobs at once would keep
        every pool and enqueue waiting for most of a minute.
        """
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        age = parse_duration(older_than, "older_than")
        if isinstance(states, str | State):  # one state, not the letters of its name
            states = [states]
        chosen = FINISHED if states is None else {_state(state) for state in states}
        try:
            before = self.store.now() - timedelta(seconds=age)
        except OverflowError:
            before = datetime.min.replace(tzinfo=UTC)
        if dry_run:
            return self.store.prune(before, chosen, dry_run=True)
        deleted = 0
        while (batch := self.store.prune(before, chosen, limit=PRUNE_BATCH)) > 0:
            deleted += batch
            if batch < PRUNE_BATCH:
                break
        return deleted

    def logs(self, job_id: str, attempt: int | None = None) -> str:
        """The output of a job's attempt (the latest by default; while it runs, what it
        printed so far): stdout, then stderr, decoded as UTF-8. Only the last
        ``output_max_bytes`` of each stream are kept."""
        found = self._attempt(job_id, attempt)
        return (found.stdout + found.stderr).decode("utf-8", "replace")

    def follow(self, job_id: str) -> Iterator[Chunk | Attempt]:
        """The output of the job's latest attempt as it comes, as ``Chunk``s, then the ended
        ``Attempt`` (see ``queuectl.follow``)."""
        from queuectl.follow import follow

        return follow(self.store, job_id)

    def _attempt(self, job_id: str, number: int | None) -> Attempt:
        if number is None:
            latest = self.store.last_attempt(job_id)
            if latest is None:
                raise NotFound(f"job '{job_id}' has not run yet.")
            return latest
        chosen = [a for a in self.store.attempts(job_id) if a.number == number]
        if not chosen:
            raise NotFound(f"job '{job_id}' has no attempt {number}.")
        return chosen[-1]


def _unique(job_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(job_ids))


def _state(value: State | str) -> State:
    return value if isinstance(value, State) else validate_state(value)
