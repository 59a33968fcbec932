"""A whole queue as one value, for moving it to another store (``queuectl migrate``). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from queuectl.errors import InvalidInput
from queuectl.model.config import Config
from queuectl.model.job import Attempt, Job, State


@dataclass(frozen=True)
class QueueCopy:
    """The jobs of a queue in enqueue order, every attempt in start order, its config, and
    its dependencies as (parent, child) pairs."""

    jobs: list[Job]
    attempts: list[Attempt]
    config: Config
    edges: list[tuple[str, str]] = field(default_factory=list)

    def check_movable(self) -> None:
        """Refuse a queue with running jobs: their leases and fences belong to its old store.

        Raises:
            InvalidInput: some job is processing.
        """
        running = [job.id for job in self.jobs if job.state is State.PROCESSING]
        if running:
            shown = ", ".join(running[:5]) + (", ..." if len(running) > 5 else "")
            raise InvalidInput(
                f"{len(running)} job(s) are running ({shown}): stop the worker pools first "
                "(queuectl worker stop --wait), then copy the queue."
            )


@dataclass(frozen=True)
class Moved:
    """What a copy moved, and where from and to (both locations safe to print)."""

    jobs: int
    attempts: int
    source: str
    target: str
