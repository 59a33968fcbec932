"""The SQLite schema, its version, and what SQLite errors mean to a user.

The version lives in ``PRAGMA user_version``. A connection reads it once when it opens: no DDL
runs on a queue whose schema is current. A later version adds a step to ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

VERSION = 6
BUSY_SECONDS = 60.0
#: bytes per database page of a new queue file. A commit writes each page it changed to the
#: WAL and an enqueue changes six (the job, its id, the claim and state indexes, the counts):
#: with 1 KiB pages instead of SQLite's 4 KiB, a durable enqueue has a quarter of the bytes
#: to fsync, and takes about a quarter less time.
PAGE_SIZE = 1024

# The triggers that keep job_counts; version 3 makes them again on its rebuilt jobs table.
COUNT_TRIGGERS = """CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
    UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER jobs_counted_on_update AFTER UPDATE OF state ON jobs
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
    UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
END;
"""

# The triggers that keep group_counts; version 6 makes them again on its rebuilt jobs table.
GROUP_TRIGGERS = """CREATE TRIGGER jobs_group_counted_on_insert AFTER INSERT ON jobs
    WHEN NEW.job_group IS NOT NULL BEGIN
    INSERT INTO group_counts (job_group, state, n) VALUES (NEW.job_group, NEW.state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_group_counted_on_update AFTER UPDATE OF state ON jobs
    WHEN NEW.job_group IS NOT NULL AND OLD.state IS NOT NEW.state BEGIN
    UPDATE group_counts SET n = n - 1 WHERE job_group = OLD.job_group AND state = OLD.state;
    DELETE FROM group_counts WHERE job_group = OLD.job_group AND state = OLD.state AND n <= 0;
    INSERT INTO group_counts (job_group, state, n) VALUES (NEW.job_group, NEW.state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_group_counted_on_delete AFTER DELETE ON jobs
    WHEN OLD.job_group IS NOT NULL BEGIN
    UPDATE group_counts SET n = n - 1 WHERE job_group = OLD.job_group AND state = OLD.state;
    DELETE FROM group_counts WHERE job_group = OLD.job_group AND state = OLD.state AND n <= 0;
END;
"""
# The indexes of the jobs table; version 6 makes them again on its rebuilt jobs table.
JOB_INDEXES = """CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'processing';
CREATE INDEX jobs_finished ON jobs (updated_at)
    WHERE state IN ('completed', 'dead', 'cancelled');
CREATE INDEX jobs_by_group ON jobs (job_group, seq) WHERE job_group IS NOT NULL;
"""

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'processing', 'failed', 'completed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    timeout REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    worker_id TEXT,
    lease_until REAL,
    attempt_id INTEGER
);
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'processing';

-- AUTOINCREMENT: an attempt id is never reused, so it can fence a run for good.
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    exit_code INTEGER,
    outcome TEXT,
    error TEXT,
    stdout BLOB NOT NULL DEFAULT x'',
    stderr BLOB NOT NULL DEFAULT x''
);
CREATE INDEX attempts_by_job ON attempts (job_id, id);

CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
""",
    # Counts per state kept by triggers, so that `status` does not scan a million jobs.
    2: """
CREATE TABLE job_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO job_counts (state, n)
    SELECT column1, (SELECT COUNT(*) FROM jobs WHERE jobs.state = column1)
    FROM (VALUES ('pending'), ('processing'), ('failed'), ('completed'), ('dead'));
"""
    + COUNT_TRIGGERS,
    # Job control. SQLite cannot change a CHECK constraint, so jobs is rebuilt the way
    # https://www.sqlite.org/lang_altertable.html#otheralter says: a new table, the rows
    # copied with their seq, the old one dropped (with its indexes and triggers), the new one
    # renamed, indexes and triggers made again.
    3: """
CREATE TABLE jobs_new (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    state TEXT NOT NULL CHECK (
        state IN ('pending', 'processing', 'failed', 'completed', 'dead', 'cancelled')
    ),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    timeout REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    worker_id TEXT,
    lease_until REAL,
    attempt_id INTEGER,
    cwd TEXT,  -- NULL: jobs from before v3 run in their pool's directory
    enqueued_from TEXT,
    env TEXT,  -- JSON object, NULL when the job sets no variables
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
INSERT INTO jobs_new (seq, id, command, state, attempts, max_retries, priority, run_at,
        timeout, created_at, updated_at, last_error, worker_id, lease_until, attempt_id)
    SELECT seq, id, command, state, attempts, max_retries, priority, run_at,
        timeout, created_at, updated_at, last_error, worker_id, lease_until, attempt_id
    FROM jobs ORDER BY seq;
-- The old counter may be past the highest seq left (its newest jobs deleted); keep it, so
-- that a seq is never handed out twice.
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
UPDATE sqlite_sequence SET name = 'jobs_new' WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'processing';
-- What prune reads, oldest first: without it every prune, even one that finds nothing (a
-- pool's usual case), reads every finished job. Partial, so that an enqueue, a claim or a
-- retry with backoff leaves it alone; only a job that finishes (or is pruned, or rerun) adds
-- or removes an entry: a finish_and_claim wrote 11.5 pages to the WAL instead of 10.2.
CREATE INDEX jobs_finished ON jobs (updated_at)
    WHERE state IN ('completed', 'dead', 'cancelled');
INSERT INTO job_counts (state, n) VALUES ('cancelled', 0);
"""
    + COUNT_TRIGGERS
    + """ALTER TABLE attempts ADD COLUMN stdout_bytes INTEGER;
ALTER TABLE attempts ADD COLUMN stderr_bytes INTEGER;
""",
    # Groups, tags, params and results. The new columns are NULL for older jobs. Counts per
    # group and state, kept by triggers like job_counts, so that `status` with a thousand
    # groups reads a few thousand rows, not the jobs; a state a group no longer has is
    # deleted, so the table holds only what `status` shows.
    4: """
ALTER TABLE jobs ADD COLUMN job_group TEXT;
ALTER TABLE jobs ADD COLUMN tags TEXT;  -- JSON list, NULL when the job has none
ALTER TABLE jobs ADD COLUMN params TEXT;  -- JSON object, NULL when the job has none
ALTER TABLE attempts ADD COLUMN result TEXT;  -- JSON object written to $QUEUECTL_RESULT
CREATE INDEX jobs_by_group ON jobs (job_group, seq) WHERE job_group IS NOT NULL;
CREATE TABLE group_counts (
    job_group TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (job_group, state)
) WITHOUT ROWID;
"""
    + GROUP_TRIGGERS,
    # Attempts are numbered over a job's whole history (a retry no longer starts again at 1):
    # the histories of jobs retried before are renumbered in start order, and an index keeps
    # a number from being given twice (and finds a job's highest number for the next claim).
    5: """
UPDATE attempts SET number = (
    SELECT count(*) FROM attempts b WHERE b.job_id = attempts.job_id AND b.id <= attempts.id)
WHERE job_id IN (
    SELECT job_id FROM attempts GROUP BY job_id HAVING count(*) <> count(DISTINCT number));
CREATE UNIQUE INDEX attempts_numbered ON attempts (job_id, number);
""",
    # Dependencies: a job waits for its parents in the new state 'blocked', with the count of
    # parents not yet finished (so that a parent's finish releases a child without reading
    # the child's other parents) and the edges kept in a table of their own. The new state
    # needs a new CHECK, so jobs is rebuilt as in version 3.
    6: """
CREATE TABLE jobs_new (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN (
        'blocked', 'pending', 'processing', 'failed', 'completed', 'dead', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    timeout REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    worker_id TEXT,
    lease_until REAL,
    attempt_id INTEGER,
    cwd TEXT,
    enqueued_from TEXT,
    env TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    job_group TEXT,
    tags TEXT,
    params TEXT,
    after_rule TEXT CHECK (after_rule IN ('ok', 'any')),  -- NULL: no parents
    unmet INTEGER NOT NULL DEFAULT 0,  -- parents that have not let a blocked job go
    cancelled_by TEXT,  -- the parent whose end cancelled it
    has_children INTEGER NOT NULL DEFAULT 0  -- a finish looks for dependents only then
);
INSERT INTO jobs_new (seq, id, command, state, attempts, max_retries, priority, run_at,
        timeout, created_at, updated_at, last_error, worker_id, lease_until, attempt_id, cwd,
        enqueued_from, env, cancel_requested, job_group, tags, params)
    SELECT seq, id, command, state, attempts, max_retries, priority, run_at,
        timeout, created_at, updated_at, last_error, worker_id, lease_until, attempt_id, cwd,
        enqueued_from, env, cancel_requested, job_group, tags, params
    FROM jobs ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
UPDATE sqlite_sequence SET name = 'jobs_new' WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
"""
    + JOB_INDEXES
    + COUNT_TRIGGERS
    + GROUP_TRIGGERS
    + """INSERT INTO job_counts (state, n) VALUES ('blocked', 0);
CREATE TABLE job_edges (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX job_edges_by_child ON job_edges (child, parent);
""",
}

OUR_TABLES = {
    "jobs",
    "attempts",
    "config",
    "workers",
    "job_counts",
    "group_counts",
    "job_edges",
    "sqlite_sequence",
}


class NotOurs(sqlite3.DatabaseError):
    """The file is an SQLite database of some other program."""


class TooNew(sqlite3.DatabaseError):
    """The file was written by a newer queuectl."""


def prepare(conn: sqlite3.Connection) -> None:
    """Set the connection's pragmas and bring the schema to ``VERSION``."""
    conn.execute("PRAGMA synchronous = FULL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise TooNew(version)
    if version < 0:  # no queuectl ever wrote that
        raise NotOurs()
    if version < VERSION:
        if version == 0:
            # Only a new, empty file takes it: the page size is fixed once anything is written.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        _migrate(conn)
    _ensure_wal(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        if version == 0:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if tables - OUR_TABLES:
                raise NotOurs()
        # Statement by statement: executescript() would commit the transaction half-way.
        for step in range(version + 1, VERSION + 1):
            for statement in statements(MIGRATIONS[step]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (a trigger's body holds ``;`` too)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]}")
    return found


def _ensure_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (stored in the file) if it is not yet; retry while busy.

    Changing the journal mode needs a moment alone with the file and fails at once, without
    the busy handler, while another process has it open; so this retries until the busy
    timeout. It runs on every open because the process that created the schema may have
    lost that race.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            # Answers the mode in force afterwards: the old one if the switch was refused.
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked: could not switch to WAL mode")
        time.sleep(0.01)


def explain(exc: sqlite3.Error, path: Path) -> str:
    """A user-facing sentence for an SQLite error on the queue at ``path``."""
    text = str(exc)
    if isinstance(exc, TooNew):
        return (
            f"{path} was created by a newer queuectl (schema version {exc.args[0]}; this one "
            f"knows {VERSION}). Upgrade queuectl to use this queue."
        )
    if isinstance(exc, NotOurs):
        return f"{path} is an SQLite database of another program, not a queuectl queue."
    if "file is not a database" in text:
        return f"{path} is not a queuectl queue database (it is not an SQLite file)."
    if "readonly" in text or "read-only" in text:
        return f"the queue database {path} is read-only: check its and its folder's permissions."
    if "unable to open" in text:
        return (
            f"cannot open the queue database {path}: check that its folder exists and is "
            "writable (SQLite needs to create files next to it)."
        )
    if "locked" in text or "busy" in text:
        return f"the queue database {path} stayed locked for too long; another process holds it."
    return f"the queue database {path} failed: {text}."
