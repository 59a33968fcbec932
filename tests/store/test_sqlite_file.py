"""The SQLite file itself: permissions, durability settings and files that are not our queue."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queuectl.errors import SchemaTooNew, StoreError
from queuectl.model import Directory, JobFilter, NewJob, Outcome, RunResult, State, Transition
from queuectl.store import open_store, redact, schema
from queuectl.store.sqlite import SqliteStore
from tests.conftest import Cli
from tests.store.test_contract import check_one_attempt_sequence

DONE = Transition(State.COMPLETED)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_0700_and_database_0600_even_with_a_permissive_umask(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = os.umask(0)
    try:
        store = open_store()
        store.close()
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    assert mode(home / "queue.db") == 0o600


def test_wal_mode_and_full_sync(store: SqliteStore) -> None:
    conn = store._db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_schema_version_is_recorded(store: SqliteStore) -> None:
    assert store._db.connection().execute("PRAGMA user_version").fetchone()[0] == schema.VERSION


def test_a_new_queue_file_has_small_pages(store: SqliteStore) -> None:
    assert store._db.connection().execute("PRAGMA page_size").fetchone()[0] == schema.PAGE_SIZE


def test_a_version_1_queue_is_upgraded_with_its_counts(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for statement in schema.statements(schema.MIGRATIONS[1]):
            conn.execute(statement)
        for n, state in enumerate(["pending", "dead", "dead", "completed"]):
            conn.execute(
                "INSERT INTO jobs (id, command, state, max_retries, run_at, created_at, "
                "updated_at) VALUES (?, 'true', ?, 0, 0, 0, 0)",
                (f"j{n}", state),
            )
        conn.execute("PRAGMA user_version = 1")
    store = SqliteStore(db_path)
    counts = store.counts()
    assert (counts[State.PENDING], counts[State.DEAD], counts[State.COMPLETED]) == (1, 2, 1)
    store.retry(["j1"])
    assert store.counts()[State.DEAD] == 1 and store.counts()[State.PENDING] == 2
    # A file written before keeps its page size (it is fixed once anything is written).
    assert store._db.connection().execute("PRAGMA page_size").fetchone()[0] == 4096
    store.close()


def version_2_queue(path: Path) -> None:
    """A queue file as queuectl wrote it before job control (schema version 2): 'p' pending,
    'f' failed, 'c' completed, 'd' dead (with an attempt), 'r' running; 'gone', the newest
    job, was deleted, so the seq counter is past the highest seq left."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for step in (1, 2):
            for statement in schema.statements(schema.MIGRATIONS[step]):
                conn.execute(statement)
        jobs = [
            ("p", "pending", 0, None, None, None, None),
            ("f", "failed", 1, "exit code 3", None, None, None),
            ("c", "completed", 1, None, None, None, None),
            ("d", "dead", 2, "exit code 1", None, None, None),
            ("r", "processing", 1, None, "w", 1_000_030.0, 7),
            ("gone", "completed", 1, None, None, None, None),
        ]
        for n, (job_id, state, attempts, error, worker, lease, attempt_id) in enumerate(jobs):
            at = 1_000_000 + n
            conn.execute(
                "INSERT INTO jobs (id, command, state, attempts, max_retries, priority, run_at, "
                "timeout, created_at, updated_at, last_error, worker_id, lease_until, "
                "attempt_id) VALUES (?, ?, ?, ?, 2, ?, ?, 5, 1000000, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    f"echo {job_id}",
                    state,
                    attempts,
                    n,
                    at,
                    at,
                    error,
                    worker,
                    lease,
                    attempt_id,
                ),
            )
        conn.execute("DELETE FROM jobs WHERE id = 'gone'")
        conn.execute(
            "INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, "
            "exit_code, outcome, error, stdout, stderr) "
            "VALUES ('d', 2, 'w', 1000001, 1000003, 1, 'failed', 'exit code 1', x'6869', x'')"
        )
        conn.execute("PRAGMA user_version = 2")


def test_a_version_2_queue_is_upgraded_keeping_its_jobs(db_path: Path) -> None:
    version_2_queue(db_path)
    now = [1_000_010.0]
    store = SqliteStore(db_path, clock=lambda: now[0])
    try:
        counts = store.counts()
        assert counts == {state: 0 for state in State} | {
            State.PENDING: 1,
            State.FAILED: 1,
            State.COMPLETED: 1,
            State.DEAD: 1,
            State.PROCESSING: 1,
        }
        assert [job.id for job in store.jobs()] == ["r", "d", "c", "f", "p"]  # order kept
        dead = store.get("d")
        assert (dead.command, dead.state, dead.attempts, dead.max_retries) == (
            "echo d",
            State.DEAD,
            2,
            2,
        )
        assert (dead.priority, dead.timeout, dead.last_error) == (3, 5, "exit code 1")
        assert dead.updated_at == datetime.fromtimestamp(1_000_003, UTC)
        # Jobs from before have no directory: they run in the pool's, as they always did.
        assert (dead.cwd, dead.enqueued_from, dict(dead.env), dead.cancel_requested) == (
            None,
            None,
            {},
            False,
        )
        assert dead.directory(Directory.ENQUEUER) is None
        (attempt,) = store.attempts("d")
        assert (attempt.number, attempt.stdout, attempt.outcome, attempt.stdout_bytes) == (
            2,
            b"hi",
            Outcome.FAILED,
            None,
        )
        assert store.expired() == []
        assert store.cancel(["p", "f", "r"]) == {
            "p": State.CANCELLED,
            "f": State.CANCELLED,
            "r": State.PROCESSING,
        }
        assert store.counts()[State.CANCELLED] == 2
        now[0] = 1_000_031.0  # past the running job's lease: its pool is gone
        (running,) = store.expired()
        assert (running.job.id, running.fence.attempt_id, running.fence.worker_id) == ("r", 7, "w")
        lost = RunResult(Outcome.LOST, None, "lost")
        failed = Transition(State.FAILED, 0, "lost")
        assert store.finish(running.fence, lost, failed, only_if_expired=True)
        assert store.counts()[State.CANCELLED] == 3
        store.enqueue([NewJob("echo new", "new", cwd="/srv", env={"K": "v"})])
        new = store.get("new")
        assert (new.cwd, dict(new.env)) == ("/srv", {"K": "v"})
        seqs = dict(store._db.read("SELECT id, seq FROM jobs"))
        assert seqs["new"] == 7  # after 'gone' (6): no seq is handed out twice
        claim = store.claim("w2", 30)
        assert claim and claim.job.id == "new"
        assert store.finish(claim.fence, RunResult(Outcome.COMPLETED, 0, None), DONE)
        assert store.get("new").state is State.COMPLETED
        assert store.counts()[State.COMPLETED] == 2
    finally:
        store.close()


def test_an_upgraded_queue_has_the_schema_of_a_new_one(db_path: Path, tmp_path: Path) -> None:
    version_2_queue(db_path)
    SqliteStore(db_path).close()
    SqliteStore(tmp_path / "new.db").close()

    def definitions(path: Path) -> set[tuple[str, str, str | None]]:
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            found = conn.execute("SELECT type, name, sql FROM sqlite_master")
            return set(found.fetchall())

    assert definitions(db_path) == definitions(tmp_path / "new.db")


def test_sqlite_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert (tmp_path / "rel.db").exists() and (tmp_path / "abs.db").exists()
    relative.close()
    absolute.close()


def test_password_in_url_is_redacted() -> None:
    # Errors from a real server are checked in test_postgres.py.
    assert redact("postgresql://bob:s3cret@db:5432/q") == "postgresql://bob:***@db:5432/q"
    assert redact("postgres://bob@db/q") == "postgres://bob@db/q"


def faulty_file(tmp_path: Path, kind: str) -> Path:
    """A queue path in ``tmp_path`` that is unusable in the way ``kind`` (of ``FAULTS``) says."""
    path = tmp_path / "queue.db"
    if kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "short":
        path.write_bytes(b"x")
    elif kind == "newer":
        SqliteStore(path).close()
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA user_version = 99")
    elif kind == "foreign":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER)")
    elif kind == "missing-dir":
        path = tmp_path / "no" / "such" / "queue.db"
    elif kind == "directory":
        path.mkdir()
    return path


# (kind, what the error says, the exception of open_store)
FAULTS = [
    ("garbage", "not an SQLite file", StoreError),
    ("short", "not an SQLite file", StoreError),
    ("newer", "newer queuectl (schema version 99", SchemaTooNew),
    ("foreign", "database of another program", StoreError),
    ("missing-dir", "does not exist", StoreError),
    ("directory", "is a directory", StoreError),
]


@pytest.mark.parametrize(("kind", "message", "error"), FAULTS)
def test_unusable_files_give_a_clear_error_and_stay_untouched(
    tmp_path: Path, kind: str, message: str, error: type[Exception]
) -> None:
    path = faulty_file(tmp_path, kind)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(error, match=re.escape(message)):
        open_store(str(path))
    if before is not None:
        assert path.read_bytes() == before
    cli = Cli(path, tmp_path / "home")
    proc = cli.run("status", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error:") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_concurrent_first_opens_agree_on_wal(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "race.db"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.map(_open_and_count, [str(path)] * 6)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _open_and_count(path: str) -> int:
    store = SqliteStore(path)
    try:
        return sum(store.counts().values())
    finally:
        store.close()


def test_a_file_in_rollback_mode_is_switched_to_wal(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_claim_reads_only_the_claimable_index(store: SqliteStore) -> None:
    from queuectl.store.sqlite import CLAIM_SOURCE, CLAIMABLE, NOT_PAUSED

    query = (
        f"SELECT rowid FROM {CLAIM_SOURCE} WHERE {CLAIMABLE} AND {NOT_PAUSED} "
        "ORDER BY priority DESC, run_at, seq"
    )
    plan = " ".join(
        row[3] for row in store._db.connection().execute(f"EXPLAIN QUERY PLAN {query}", {"now": 0})
    )
    assert "jobs_claimable" in plan and "TEMP B-TREE" not in plan


def test_a_prune_reads_only_the_old_finished_jobs(store: SqliteStore) -> None:
    """Pools prune often and mostly find nothing: each statement must go by the index of
    finished jobs (oldest first, no sort) and reach attempts by job, never scan a table."""
    store.enqueue([NewJob("true", "a")])
    statements: list[str] = []
    conn = store._db.connection()
    conn.set_trace_callback(statements.append)
    try:
        finished = [State.COMPLETED, State.DEAD, State.CANCELLED]
        store.prune(store.now(), finished, dry_run=True)
        store.prune(store.now(), finished, limit=10)
        store.cancel(["a"])
        assert store.prune(store.now() + timedelta(seconds=1), finished, limit=10) == 1
    finally:
        conn.set_trace_callback(None)
    # (a statement is traced again for each trigger it fires)
    chosen = list(dict.fromkeys(sql for sql in statements if "jobs_finished" in sql))
    assert len(chosen) == 6  # the dry run, two probes, the three deletes
    for sql in chosen:
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX jobs_finished (updated_at<?)" in plan, plan
        assert "TEMP B-TREE" not in plan and "SCAN jobs" not in plan, plan
        assert "SCAN job_edges" not in plan, plan
        assert "SCAN attempts" not in plan, plan


CLOSE_DURING_A_STATEMENT = """
import sys, threading
from queuectl.store import open_store

store = open_store(sys.argv[1])
inside, closed = threading.Event(), threading.Event()
rows = []

def slow_function():
    inside.set()
    closed.wait(10)
    return 1

def pool_thread():
    conn = store._db.connection()
    conn.create_function("slow_function", 0, slow_function)
    rows.extend(conn.execute("SELECT slow_function()").fetchall())
    rows.extend(conn.execute("SELECT count(*) FROM jobs").fetchall())
    store.release()

thread = threading.Thread(target=pool_thread)
thread.start()
inside.wait(10)
store.close()
closed.set()
thread.join()
print(rows)
"""


def test_closing_the_store_mid_statement_of_another_thread(db_path: Path) -> None:
    """The crash CI met when a notebook unloaded the magic while a pool still ran: closing
    another thread's connection under a running statement is a segmentation fault. The script
    runs in its own interpreter so that a crash fails this test, not the test session."""
    done = subprocess.run(
        [sys.executable, "-c", CLOSE_DURING_A_STATEMENT, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[(1,), (0,)]"), done.stderr


def test_a_version_3_queue_is_upgraded_for_groups_and_results(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for step in (1, 2, 3):
            for statement in schema.statements(schema.MIGRATIONS[step]):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (id, command, state, attempts, max_retries, run_at, created_at, "
            "updated_at, cwd, env) VALUES ('old', 'echo old', 'completed', 1, 0, 0, 0, 0, "
            """'/srv', '{"A": "1"}')"""
        )
        conn.execute(
            "INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, "
            "exit_code, outcome) VALUES ('old', 1, 'w', 0, 2, 0, 'completed')"
        )
        conn.execute("PRAGMA user_version = 3")
    store = SqliteStore(db_path)
    try:
        old = store.get("old")
        assert (old.group, old.tags, dict(old.params), dict(old.env)) == (None, (), {}, {"A": "1"})
        assert store.attempts("old")[0].result is None
        assert store.group_counts() == {}
        store.enqueue([NewJob("true", "g1", group="g", tags=("t",), params={"lr": 0.1})])
        claim = store.claim("w", 30)
        assert claim and claim.job.params == {"lr": 0.1}
        done = RunResult(Outcome.COMPLETED, 0, None, result={"loss": 0.5})
        assert store.finish(claim.fence, done, DONE)
        table = store.result_table(JobFilter(group="g"))
        assert (table["id"], table["state"], table["params"], table["result"]) == (
            ["g1"],
            ["completed"],
            ['{"lr": 0.1}'],
            ['{"loss": 0.5}'],
        )
        assert store.group_counts() == {"g": {s: 0 for s in State} | {State.COMPLETED: 1}}
        assert store.counts(JobFilter(tag="t"))[State.COMPLETED] == 1
    finally:
        store.close()


def test_a_version_4_queue_gets_one_attempt_sequence_per_job(db_path: Path) -> None:
    """Before version 5 a retry numbered its attempts from 1 again: the upgrade renumbers
    such histories in start order and leaves the others, and new attempts count on."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for step in range(1, 5):
            for statement in schema.statements(schema.MIGRATIONS[step]):
                conn.execute(statement)
        for job, state in (("retried", "dead"), ("once", "completed")):
            conn.execute(
                "INSERT INTO jobs (id, command, state, attempts, max_retries, run_at, "
                f"created_at, updated_at) VALUES ('{job}', 'false', '{state}', 1, 0, 0, 0, 0)"
            )
        for job, number, start in (("retried", 1, 1), ("retried", 2, 2), ("retried", 1, 3)):
            conn.execute(
                "INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, "
                f"exit_code, outcome) VALUES ('{job}', {number}, 'w', {start}, {start}, 1, "
                "'failed')"
            )
        conn.execute(
            "INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, "
            "exit_code, outcome) VALUES ('once', 4, 'w', 5, 6, 0, 'completed')"  # a gap: kept
        )
        conn.execute("PRAGMA user_version = 4")
    store = SqliteStore(db_path)
    try:
        check_one_attempt_sequence(store)
    finally:
        store.close()


def test_a_version_5_queue_is_rebuilt_for_dependencies(db_path: Path) -> None:
    """Version 6 rebuilds the jobs table (a new state needs a new CHECK): every job keeps its
    fields and enqueue order, counts and group counts stay right, and jobs can wait."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for step in range(1, 6):
            for statement in schema.statements(schema.MIGRATIONS[step]):
                conn.execute(statement)
        for seq, (job, state) in enumerate((("done", "completed"), ("next", "pending")), 7):
            conn.execute(
                "INSERT INTO jobs (seq, id, command, state, attempts, max_retries, run_at, "
                "created_at, updated_at, job_group, tags, params) VALUES "
                f"({seq}, '{job}', 'true', '{state}', 0, 0, 0, 0, 0, 'g', '[\"t\"]', "
                """'{"n": 1}')"""
            )
        conn.execute("PRAGMA user_version = 5")
    store = SqliteStore(db_path)
    try:
        assert [job.id for job in store.jobs()] == ["next", "done"]
        assert store.get("done").params == {"n": 1} and store.get("done").tags == ("t",)
        assert store.counts()[State.PENDING] == 1 and store.counts()[State.BLOCKED] == 0
        assert store.group_counts()["g"][State.COMPLETED] == 1
        (child,) = store.enqueue([NewJob("true", "child", after=("next", "done"))])
        assert (child.state, child.unmet) == (State.BLOCKED, 1)
        claim = store.claim("w", 30)
        assert claim and claim.job.id == "next"
        assert store.finish(claim.fence, RunResult(Outcome.COMPLETED, 0, None), DONE)
        assert store.get("child").state is State.PENDING
        assert store.counts()[State.BLOCKED] == 0 and store.counts()[State.COMPLETED] == 2
        # the enqueue order goes on after the old jobs
        assert store.jobs(limit=1)[0].id == "child"
    finally:
        store.close()
