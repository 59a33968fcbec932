"""The domain model: jobs, attempts, states, configuration and retry policy. Pure, no I/O."""

from __future__ import annotations

from queuectl.model.config import Config
from queuectl.model.copy import QueueCopy
from queuectl.model.job import (
    Attempt,
    Claim,
    Directory,
    Fence,
    Job,
    JobChanges,
    JobFilter,
    NewJob,
    Outcome,
    RunResult,
    State,
    Transition,
    WorkerInfo,
)
from queuectl.model.status import QueueStatus

__all__ = [
    "Attempt",
    "Claim",
    "Config",
    "Directory",
    "Fence",
    "Job",
    "JobChanges",
    "JobFilter",
    "NewJob",
    "Outcome",
    "QueueCopy",
    "QueueStatus",
    "RunResult",
    "State",
    "Transition",
    "WorkerInfo",
]
