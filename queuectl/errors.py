"""The one exception hierarchy of queuectl.

    QueuectlError                 exit 1: runtime problems
    ├── InvalidInput              exit 2: the user's input is wrong; nothing was written
    │   ├── DuplicateJob          a job with this id exists already
    │   └── InvalidTransition     the job is not in a state that allows the request
    ├── NotFound                  exit 1: no job, attempt or key of that name
    ├── NoWorkers                 exit 1: waiting for jobs that no worker pool will run
    ├── QueuePaused               exit 1: waiting for jobs of a paused queue
    ├── WaitTimeout               exit 1: the jobs did not finish within the timeout
    └── StoreError                exit 1: the queue database cannot be used
        ├── SchemaTooNew          created by a newer queuectl
        └── MissingDependency     an optional extra is not installed

The core raises these; only the two front ends (the CLI and the notebook magic) turn them into
exit codes or ``UsageError``.
"""

from __future__ import annotations

from typing import ClassVar


class QueuectlError(Exception):
    """Something went wrong in queuectl."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The text shown to the user after ``Error:``."""
        return str(self.args[0])


class InvalidInput(QueuectlError):
    """The input is not valid."""

    exit_code = 2


class DuplicateJob(InvalidInput):
    """A job with this id exists already."""


class InvalidTransition(InvalidInput):
    """The job is not in a state that allows this request."""


class NotFound(QueuectlError):
    """Nothing of that name exists."""


class NoWorkers(QueuectlError):
    """Jobs are unfinished and no worker pool of the queue is running."""

    def __init__(self, unfinished: int, start_workers: str | None = None) -> None:
        how = f" ({start_workers})" if start_workers else ""
        super().__init__(
            f"{unfinished} job(s) are unfinished and no worker pool of this queue is running: "
            f"start one{how}, then wait again."
        )
        self.unfinished = unfinished

    def naming(self, start_workers: str) -> str:
        """The message naming a front end's way to start a pool (the core knows none)."""
        return NoWorkers(self.unfinished, start_workers).message


class QueuePaused(QueuectlError):
    """Jobs wait and the queue is paused: no pool will start them until it is resumed."""

    def __init__(self, waiting: int) -> None:
        super().__init__(
            f"the queue is paused and {waiting} job(s) wait: no pool starts them until it is "
            "resumed. Resume it, then wait again."
        )


class WaitTimeout(QueuectlError):
    """The jobs did not finish within the timeout."""


class StoreError(QueuectlError):
    """The queue database cannot be used."""


class SchemaTooNew(StoreError):
    """The queue database was created by a newer queuectl; upgrade queuectl to use it."""


class MissingDependency(StoreError):
    """An optional dependency is not installed."""
