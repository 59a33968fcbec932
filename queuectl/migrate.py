"""Moving a queue to another store: every job, attempt and the configuration, as they are.

The usual move is from an SQLite file to PostgreSQL when a queue outgrows one machine; any
direction works, because both sides go through the Store port. The source is only read. The
copy is refused, before anything is written, while pools serve the source (they would go on
changing it) or jobs are running, and when the target has jobs already.
"""

from __future__ import annotations

from queuectl.api import Queue, connect
from queuectl.errors import InvalidInput
from queuectl.model import QueueCopy
from queuectl.model.copy import Moved as Moved  # re-exported: its old home


def copy_queue(source: Queue, target: str) -> Moved:
    """Copy ``source`` into the empty queue at ``target`` (a path or URL; created if new)."""
    pools = source.workers()
    if pools:
        hosts = ", ".join(sorted({pool.host for pool in pools}))
        raise InvalidInput(
            f"{len(pools)} worker pool(s) still serve {source.location} (on {hosts}): stop "
            "them first (queuectl worker stop --wait), then copy the queue."
        )
    copy = QueueCopy(
        list(reversed(source.job_records())),
        source.attempt_records(),
        source.config(),
        [(edge.parent, edge.child) for edge in source.store.edges()],
    )
    copy.check_movable()  # before the target is even opened (opening may create it)
    with connect(target) as destination:
        if destination.location == source.location:
            raise InvalidInput(f"{source.location} is the queue being copied; name another.")
        destination.import_copy(copy)
        return Moved(len(copy.jobs), len(copy.attempts), source.location, destination.location)
