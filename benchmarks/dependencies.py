"""Dependencies: a claim must not slow down with many jobs blocked behind parents, and a
chain of jobs (each after the one before) moves at the speed of pool pickups.

- claim+finish with 100,000 jobs blocked (on a parent that runs meanwhile), against the same
  with 1,000 blocked: blocked jobs are not in the claim's index, so the ratio stays near 1;
- a chain of 1,000 jobs run by one pool process: per link, the time from a parent's finish to
  its child's start (the store's timestamps of both attempts), p50 and p95, next to the
  pickup latency (an enqueue to its start in an idle pool) measured the same way.

On SQLite, and on a throwaway PostgreSQL server when one can be started
(``benchmarks.sweeps.postgres_server``).
"""

from __future__ import annotations

import itertools
from functools import partial

import queuectl
from benchmarks.queue_figures import pickups, pool_process
from benchmarks.report import Figure, percentile
from benchmarks.scale import median_seconds
from benchmarks.sweeps import (
    Backend,
    _claim_and_finish,
    _queue,
    backends,
)

BATCH = 10_000


def _blocked(queue: queuectl.Queue, blocked: int, claimable: int) -> None:
    """``blocked`` jobs after a parent that is running (so they stay blocked), and
    ``claimable`` pending jobs for the claims to take."""
    queue.enqueue("sleep 3600", id="parent")
    assert queue.store.claim("bench:1:0000", 3600) is not None
    for start in range(0, blocked, BATCH):
        size = min(BATCH, blocked - start)
        queue.submit([{"command": "true", "after": ["parent"]}] * size)
    queue.submit([{"command": "true"}] * claimable)


def claim_figures(backend: Backend, blocked: int, samples: int) -> list[Figure]:
    """Median claim+finish with ``blocked`` jobs blocked, against 1,000 blocked."""
    medians = {}
    for count in (1000, blocked):
        with _queue(backend) as queue:
            _blocked(queue, count, samples * 3)
            assert queue.counts()[queuectl.State.BLOCKED] == count
            medians[count] = median_seconds(partial(_claim_and_finish, queue), samples)
    return [
        Figure(
            f"claim+finish, {blocked:,} blocked, {backend.name}",
            medians[blocked] * 1000,
            "ms",
            "1,000 blocked",
            medians[1000] * 1000,
            False,
        )
    ]


def chain_latencies(queue: queuectl.Queue, links: int) -> list[float]:
    """Seconds from each parent's finish to its child's start, over a chain of ``links``."""
    ids = [f"link-{n:05d}" for n in range(links)]
    for start in range(0, links, BATCH):
        queue.submit(
            {"id": ids[n], "command": "true", **({"after": [ids[n - 1]]} if n else {})}
            for n in range(start, min(start + BATCH, links))
        )
    with pool_process(queue, 1, "--until-empty") as proc:
        proc.wait(timeout=1800)
    attempts = {a.job_id: a for a in queue.attempt_records()}
    assert len(attempts) == links, "the chain did not run to its end"
    gaps = []
    for parent, child in itertools.pairwise(ids):
        finished = attempts[parent].finished_at
        assert finished is not None
        gaps.append((attempts[child].started_at - finished).total_seconds())
    return gaps


def chain_figures(backend: Backend, links: int, samples: int) -> list[Figure]:
    with _queue(backend) as queue:
        gaps = chain_latencies(queue, links)
    with _queue(backend) as queue, pool_process(queue, 1):
        waits = pickups(queue, samples, gaps=(0.1,))
    return [
        Figure(
            f"chain of {links:,}: link latency {name}, {backend.name}",
            percentile(gaps, q) * 1000,
            "ms",
            f"pickup {name}",
            percentile(waits, q) * 1000,
            False,
        )
        for name, q in (("p50", 0.50), ("p95", 0.95))
    ]


def figures(
    blocked: int = 100_000, links: int = 1000, samples: int = 200, postgres: bool = True
) -> list[Figure]:
    """Every figure of this module, on each store."""
    measured: list[Figure] = []
    with backends(postgres) as found:
        for backend in found:
            measured += claim_figures(backend, blocked, samples)
            measured += chain_figures(backend, links, samples // 5)
    return measured


if __name__ == "__main__":
    from benchmarks.report import table

    print(table(figures()))
