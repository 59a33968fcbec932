"""Sweeps and large histories: a grid enqueued by ``sweep``, the DataFrames of a big queue,
``status`` and claims among many groups. On SQLite and, when the run has one, PostgreSQL.

- ``sweep`` of a grid (lr x seed, 100 x 1,000) against ``enqueue_many`` of the same jobs (the
  same command template, params and group), each on a fresh queue, in turn: jobs per second,
  and sweep's share of enqueue_many's rate (median of ``--repeat`` pairs).
- ``results()``, ``jobs()`` and ``attempts()`` of queues of 100,000 and 1,000,000 jobs (median
  of ``--repeat`` calls), against the store reading the same rows in one query (its
  ``result_table``, ``job_table``, ``attempt_table``): the ratio is the cost of making the
  DataFrame, the floor what the database driver costs.
- ``status()`` (median of 20) and a claim with its finish (median of 200) on 1,000,000 jobs
  in 1,000 groups, against the same queue without groups.

The large queues are made by queuectl, then filled with plain SQL in one statement per table
(fast to build): jobs in contiguous blocks per group, each with params ``{"lr", "seed"}``;
by their number modulo 20, 1 in 20 dead, failed (due for a retry), pending, processing (a
lease of a day), cancelled, the rest completed with a result ``{"loss", "acc", "epoch"}``;
one attempt per job that ran.
PostgreSQL is a throwaway server (``tests/pg_server.py``: ``fsync=off``), one database per
queue; its figures compare with each other, not with SQLite's durable commits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import queuectl
from benchmarks.report import Figure
from benchmarks.scale import median_seconds
from queuectl.model import Outcome, RunResult, State, Transition

if TYPE_CHECKING:
    from tests.pg_server import PgServer

_START = 1767225600.0  # 2026-01-01T00:00:00Z
_COMMAND = "python train.py --lr {lr} --seed {seed}"
_WORKER = "bench:9:0000"


@dataclass(frozen=True)
class Sizes:
    """How big each part is (``FULL`` for ``make bench``, ``QUICK`` for the tests)."""

    lrs: int = 100  #: the grid: lrs x seeds jobs
    seeds: int = 1000
    frame_rows: tuple[int, ...] = (100_000, 1_000_000)  #: queues whose DataFrames are timed
    group_jobs: int = 1_000_000  #: the queue of ``status`` and claims
    groups: int = 1000
    status_samples: int = 20
    claim_samples: int = 200


FULL = Sizes()
#: seconds in all: what tests/test_benchmarks.py runs
QUICK = Sizes(
    lrs=4,
    seeds=25,
    frame_rows=(300, 1500),
    group_jobs=1500,
    groups=10,
    status_samples=3,
    claim_samples=10,
)


@dataclass(frozen=True)
class Backend:
    """A kind of store: how to make a new empty queue's location, drop it, and fill it."""

    name: str
    new: Callable[[], str]
    drop: Callable[[str], None]
    fill: Callable[[str, int, int], None]  #: (location, jobs, groups); 0 groups: none


# -- filling a queue with SQL ------------------------------------------------------------------

# The n-th job (0-based) of ``total`` as columns; ``state`` by n % 20 (see above).
_SQLITE_JOBS = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :total),
s AS (SELECT i, (1 + i % 100) / 1000.0 AS lr, i / 100 AS seed, :start + i * 0.001 AS t,
    CASE i % 20 WHEN 0 THEN 'dead' WHEN 1 THEN 'failed' WHEN 2 THEN 'pending'
        WHEN 3 THEN 'processing' WHEN 4 THEN 'cancelled' ELSE 'completed' END AS state FROM n)
INSERT INTO jobs (seq, id, command, state, attempts, max_retries, priority, run_at, timeout,
    created_at, updated_at, last_error, worker_id, lease_until, attempt_id, cwd,
    enqueued_from, job_group, params)
SELECT i + 1, printf('job-%07d', i), printf('python train.py --lr %s --seed %d', lr, seed),
    state, state <> 'pending', CASE state WHEN 'failed' THEN 3 ELSE 0 END, 0, t + 0.05, 0, t,
    CASE state WHEN 'pending' THEN t ELSE t + 0.05 END,
    CASE WHEN state IN ('dead', 'failed') THEN 'exit code 1' END,
    CASE state WHEN 'processing' THEN :worker END,
    CASE state WHEN 'processing' THEN :lease END,
    CASE WHEN state <> 'pending' THEN i + 1 END, '/work', '/work',
    CASE WHEN :groups > 0 THEN printf('sweep-%04d', i * :groups / :total) END,
    json_object('lr', lr, 'seed', seed)
FROM s
"""
_SQLITE_ATTEMPTS = """
INSERT INTO attempts (id, job_id, number, worker_id, started_at, finished_at, exit_code,
    outcome, error, stdout_bytes, stderr_bytes, result)
SELECT attempt_id, id, 1, :worker, created_at,
    CASE state WHEN 'processing' THEN NULL ELSE updated_at END,
    CASE state WHEN 'completed' THEN 0 WHEN 'processing' THEN NULL WHEN 'cancelled' THEN -15
        ELSE 1 END,
    CASE state WHEN 'completed' THEN 'completed' WHEN 'processing' THEN NULL
        WHEN 'cancelled' THEN 'cancelled' ELSE 'failed' END,
    CASE WHEN state IN ('dead', 'failed') THEN 'exit code 1' END, 0, 0,
    CASE state WHEN 'completed' THEN json_object('loss', 1.0 / (2 + seq % 997),
        'acc', (seq % 1000) / 1000.0, 'epoch', 10) END
FROM jobs WHERE attempt_id IS NOT NULL ORDER BY seq
"""
_PG_JOBS = """
INSERT INTO queuectl.jobs (id, command, state, attempts, max_retries, priority, run_at,
    timeout, created_at, updated_at, last_error, worker_id, lease_until, attempt_id, cwd,
    enqueued_from, job_group, params)
SELECT format('job-%%s', lpad(i::text, 7, '0')),
    format('python train.py --lr %%s --seed %%s', lr, seed), state,
    (state <> 'pending')::int, CASE state WHEN 'failed' THEN 3 ELSE 0 END, 0, t + d, 0, t,
    CASE state WHEN 'pending' THEN t ELSE t + d END,
    CASE WHEN state IN ('dead', 'failed') THEN 'exit code 1' END,
    CASE state WHEN 'processing' THEN %(worker)s END,
    CASE state WHEN 'processing' THEN to_timestamp(%(lease)s) END,
    CASE WHEN state <> 'pending' THEN i + 1 END, '/work', '/work',
    CASE WHEN %(groups)s > 0 THEN format('sweep-%%s', lpad((i::bigint * %(groups)s
        / %(total)s)::text, 4, '0')) END,
    json_build_object('lr', lr, 'seed', seed)::text
FROM (SELECT i, ((1 + i %% 100) / 1000.0)::float8 AS lr, i / 100 AS seed,
    to_timestamp(%(start)s + i * 0.001) AS t, interval '50 ms' AS d,
    CASE i %% 20 WHEN 0 THEN 'dead' WHEN 1 THEN 'failed' WHEN 2 THEN 'pending'
        WHEN 3 THEN 'processing' WHEN 4 THEN 'cancelled' ELSE 'completed' END AS state
    FROM generate_series(0, %(total)s - 1) AS i) s
ORDER BY i
"""
_PG_ATTEMPTS = """
INSERT INTO queuectl.attempts (id, job_id, number, worker_id, started_at, finished_at,
    exit_code, outcome, error, stdout_bytes, stderr_bytes, result)
SELECT attempt_id, id, 1, %(worker)s, created_at,
    CASE state WHEN 'processing' THEN NULL ELSE updated_at END,
    CASE state WHEN 'completed' THEN 0 WHEN 'processing' THEN NULL WHEN 'cancelled' THEN -15
        ELSE 1 END,
    CASE state WHEN 'completed' THEN 'completed' WHEN 'processing' THEN NULL
        WHEN 'cancelled' THEN 'cancelled' ELSE 'failed' END,
    CASE WHEN state IN ('dead', 'failed') THEN 'exit code 1' END, 0, 0,
    CASE state WHEN 'completed' THEN json_build_object('loss', 1.0 / (2 + seq %% 997),
        'acc', (seq %% 1000) / 1000.0, 'epoch', 10)::text END
FROM queuectl.jobs WHERE attempt_id IS NOT NULL ORDER BY seq
"""


def _values(total: int, groups: int) -> dict[str, Any]:
    lease = time.time() + 86400  # running jobs keep their lease through the benchmark
    return {"total": total, "groups": groups, "start": _START, "worker": _WORKER, "lease": lease}


def fill_sqlite(db: str, total: int, groups: int) -> None:
    """Make a queue at ``db`` holding ``total`` jobs (see above), ``groups`` groups of them."""
    queuectl.connect(db).close()  # the file, its schema and pragmas, as queuectl makes them
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # building, not measuring
        conn.execute("BEGIN")
        conn.execute(_SQLITE_JOBS, _values(total, groups))
        conn.execute(_SQLITE_ATTEMPTS, {"worker": _WORKER})
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def fill_postgres(url: str, total: int, groups: int) -> None:
    """The same in a new PostgreSQL database at ``url``; its statistics gathered, as
    autovacuum would have by the time a queue holds that much."""
    import psycopg

    queuectl.connect(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(_PG_JOBS, _values(total, groups))
            conn.execute(_PG_ATTEMPTS, {"worker": _WORKER})
            conn.execute(
                "SELECT setval('queuectl.attempts_id_seq', max(id)) FROM queuectl.attempts"
            )
        conn.execute("VACUUM ANALYZE queuectl.jobs, queuectl.attempts")


# -- the figures -------------------------------------------------------------------------------


@contextmanager
def _queue(backend: Backend, total: int = 0, groups: int = 0) -> Iterator[queuectl.Queue]:
    """A new queue of ``backend`` (filled with ``total`` jobs), dropped afterwards."""
    location = backend.new()
    try:
        if total:
            backend.fill(location, total, groups)
        queue = queuectl.connect(location)
        try:
            yield queue
        finally:
            queue.close()
    finally:
        backend.drop(location)


def _rate(backend: Backend, sizes: Sizes, by_sweep: bool) -> float:
    """Jobs per second of one ``sweep`` (or ``enqueue_many`` of the same jobs)."""
    lrs = [round(0.001 * (1 + n), 3) for n in range(sizes.lrs)]
    total = sizes.lrs * sizes.seeds
    with _queue(backend) as queue:
        queue.set_config("max_sweep", max(total, 1))
        if by_sweep:
            start = time.perf_counter()
            sweep = queue.sweep(_COMMAND, group="grid", lr=lrs, seed=range(sizes.seeds))
            elapsed, enqueued = time.perf_counter() - start, len(sweep)
        else:
            jobs = [
                {"command": _COMMAND, "params": {"lr": lr, "seed": seed}, "group": "grid"}
                for lr in lrs
                for seed in range(sizes.seeds)
            ]
            start = time.perf_counter()
            enqueued = len(queue.enqueue_many(jobs))
            elapsed = time.perf_counter() - start
        assert enqueued == total == queue.counts(group="grid")[State.PENDING]
    return total / elapsed


def _claim_and_finish(queue: queuectl.Queue) -> None:
    claim = queue.store.claim(_WORKER, 30)
    assert claim is not None, "the queue ran out of claimable jobs"
    done = RunResult(Outcome.COMPLETED, 0, None, result={"loss": 0.5})
    assert queue.store.finish(claim.fence, done, Transition(State.COMPLETED))


def _operations(queue: queuectl.Queue, sizes: Sizes) -> tuple[float, float]:
    """Median seconds of ``status()`` and of a claim with its finish."""
    status = median_seconds(queue.status, sizes.status_samples)
    return status, median_seconds(lambda: _claim_and_finish(queue), sizes.claim_samples)


def _frame_figures(queue: queuectl.Queue, jobs: int, on: str, repeat: int) -> list[Figure]:
    """Seconds of each DataFrame call, against reading its rows from the store in one query
    (the driver's share: what no frame-building can save)."""
    counts = queue.counts()
    attempts = sum(counts.values()) - counts[State.PENDING]  # one per job that ran
    store = queue.store
    figures = []
    for call, action, read in (
        ("results()", queue.results, store.result_table),
        ("jobs()", queue.jobs, store.job_table),
        ("attempts()", queue.attempts, store.attempt_table),
    ):
        seconds = median_seconds(action, repeat)
        floor = median_seconds(read, repeat)
        shown = f"{attempts:,} rows" if call == "attempts()" else f"{jobs:,} jobs"
        name = f"{call} {shown}, {on}"
        figures.append(Figure(name, seconds, "s", "its rows read in one query", floor, False))
    return figures


def backend_figures(backend: Backend, sizes: Sizes, repeat: int) -> list[Figure]:
    """Every figure of this module on one kind of store."""
    on = backend.name
    total = sizes.lrs * sizes.seeds
    sweep_rates, many_rates = [], []
    for _ in range(repeat):  # in turn: a machine that slows down weighs on both alike
        sweep_rates.append(_rate(backend, sizes, True))
        many_rates.append(_rate(backend, sizes, False))
    many = statistics.median(many_rates)
    figures = [
        Figure(f"enqueue_many, {total:,} jobs, {on}", many, "jobs/s"),
        Figure(
            f"sweep, {sizes.lrs:,}x{sizes.seeds:,} grid, {on}",
            statistics.median(sweep_rates),
            "jobs/s",
            "enqueue_many, same jobs",
            many,
        ),
    ]
    grouped = (0.0, 0.0)
    for jobs in sorted({*sizes.frame_rows, sizes.group_jobs}):
        with _queue(backend, jobs, sizes.groups) as queue:
            if jobs in sizes.frame_rows:
                figures += _frame_figures(queue, jobs, on, repeat)
            if jobs == sizes.group_jobs:
                grouped = _operations(queue, sizes)
    with _queue(backend, sizes.group_jobs, 0) as plain:
        ungrouped = _operations(plain, sizes)
    figures += [
        Figure(
            f"{name}, {sizes.groups:,} groups, {sizes.group_jobs:,} jobs, {on}",
            with_groups * 1000,
            "ms",
            "no groups",
            without * 1000,
            False,
        )
        for name, with_groups, without in (
            ("status()", grouped[0], ungrouped[0]),
            ("claim+finish", grouped[1], ungrouped[1]),
        )
    ]
    return figures


# -- the stores ----------------------------------------------------------------------------------


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    """Queue files in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-") as folder:
        made = itertools.count()

        def drop(db: str) -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(db + suffix).unlink(missing_ok=True)

        yield Backend("SQLite", lambda: f"{folder}/queue-{next(made)}.db", drop, fill_sqlite)


def postgres_backend(server: PgServer) -> Backend:
    """Databases of ``server`` (a ``tests.pg_server.PgServer`` that runs)."""
    return Backend("PostgreSQL", server.create_database, server.drop_database, fill_postgres)


@contextmanager
def postgres_server() -> Iterator[PgServer | None]:
    """A throwaway PostgreSQL server (``tests.pg_server``), or None (with a note on stderr)
    when the server programs are not installed or psycopg is missing."""
    from tests.pg_server import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None or importlib.util.find_spec("psycopg") is None:
        print("sweeps: no PostgreSQL (server programs or psycopg missing)", file=sys.stderr)
        yield None
        return
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def backends(postgres: bool = True) -> Iterator[list[Backend]]:
    """SQLite, and PostgreSQL on a throwaway server if ``postgres`` and one can be started."""
    with contextlib.ExitStack() as stack:
        found = [stack.enter_context(sqlite_backend())]
        server = stack.enter_context(postgres_server()) if postgres else None
        if server is not None:
            found.append(postgres_backend(server))
        yield found


def figures(sizes: Sizes = FULL, repeat: int = 3, postgres: bool = True) -> list[Figure]:
    """Every figure of this module on SQLite, then on PostgreSQL if ``postgres`` and one can
    be started here."""
    import pandas  # noqa: F401 (imported here, not in the first DataFrame call timed)

    measured: list[Figure] = []
    with backends(postgres) as found:
        for backend in found:
            measured += backend_figures(backend, sizes, repeat)
    return measured
