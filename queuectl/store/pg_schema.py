"""The PostgreSQL schema, its version, and what psycopg errors mean to a user.

Everything lives in the schema ``queuectl`` of the database, so a queue can share a database
with an application without its tables colliding. The version is a row of ``queuectl.meta``.
Creating or upgrading the schema happens under a transaction-scoped advisory lock, so processes
that start at the same moment take turns and the later ones find the work done. DDL is
transactional in PostgreSQL: a failed upgrade leaves the previous version intact.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from queuectl.errors import SchemaTooNew, StoreError
from queuectl.store.secrets import scrub

VERSION = 6
#: rows per state in ``queuectl.job_counts``: concurrent writers spread over them
COUNT_SHARDS = 16
#: any constant that other applications are unlikely to pick: "queuectl" in ASCII
ADVISORY_LOCK = 0x7175657565637471
#: the NOTIFY channel that says "look at the queue now": jobs may be claimable, a running job
#: has a cancel request, or the queue was resumed
CHANNEL = "queuectl_claimable"

MIGRATIONS: dict[int, str] = {
    1: f"""
CREATE TABLE queuectl.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- enqueue order
    id text NOT NULL UNIQUE,
    command text NOT NULL,
    state text NOT NULL
        CHECK (state IN ('pending', 'processing', 'failed', 'completed', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    max_retries integer NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL,
    timeout double precision NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_error text,
    worker_id text,
    lease_until timestamptz,
    attempt_id bigint
);
CREATE INDEX jobs_claimable ON queuectl.jobs (priority DESC, run_at, seq)
    WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_by_state ON queuectl.jobs (state, seq);
CREATE INDEX jobs_leases ON queuectl.jobs (lease_until) WHERE state = 'processing';

-- A sequence never hands out a number twice, so an attempt id fences a run for good.
CREATE TABLE queuectl.attempts (
    id bigserial PRIMARY KEY,
    job_id text NOT NULL,
    number integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    exit_code integer,
    outcome text,
    error text,
    stdout bytea NOT NULL DEFAULT '',
    stderr bytea NOT NULL DEFAULT ''
);
CREATE INDEX attempts_by_job ON queuectl.attempts (job_id, id);

CREATE TABLE queuectl.config (key text PRIMARY KEY, value text NOT NULL);

CREATE TABLE queuectl.workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    threads integer NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stop_requested boolean NOT NULL DEFAULT false
);

-- Wake idle pools on every host when a job becomes claimable, whoever wrote it (enqueue,
-- dlq retry, a retry without backoff, a recovered lease, a copied queue). PostgreSQL
-- delivers it at commit and folds repeats within one transaction into one.
CREATE FUNCTION queuectl.notify_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_claimable AFTER INSERT OR UPDATE OF state ON queuectl.jobs
    FOR EACH ROW WHEN (NEW.state IN ('pending', 'failed') AND NEW.run_at <= now())
    EXECUTE FUNCTION queuectl.notify_claimable();
""",
    # Counts per state kept by triggers, so that `status` (and every panel's refresh) does not
    # scan a million jobs. A session adds to one of COUNT_SHARDS rows per state, chosen by its
    # backend pid, so workers on many hosts seldom wait for each other's row locks; `counts`
    # adds the rows up.
    2: f"""
CREATE TABLE queuectl.job_counts (
    state text NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (state, shard)
);
-- Writers wait until the counts and their triggers are in, so no change is missed or counted
-- twice.
LOCK TABLE queuectl.jobs IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO queuectl.job_counts (state, shard, n)
    SELECT s.state, g.shard,
        CASE WHEN g.shard = 0
            THEN (SELECT count(*) FROM queuectl.jobs j WHERE j.state = s.state) ELSE 0 END
    FROM unnest(ARRAY['pending', 'processing', 'failed', 'completed', 'dead']) AS s(state),
        generate_series(0, {COUNT_SHARDS - 1}) AS g(shard);
CREATE FUNCTION queuectl.count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Each branch names only the transition tables its event has.)
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE queuectl.job_counts SET n = 0;
    ELSIF TG_OP = 'INSERT' THEN
        UPDATE queuectl.job_counts c SET n = c.n + d.n
        FROM (SELECT state, count(*) AS n FROM new_rows GROUP BY state) d
        WHERE c.state = d.state AND c.shard = pg_backend_pid() % {COUNT_SHARDS};
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE queuectl.job_counts c SET n = c.n - d.n
        FROM (SELECT state, count(*) AS n FROM old_rows GROUP BY state) d
        WHERE c.state = d.state AND c.shard = pg_backend_pid() % {COUNT_SHARDS};
    ELSE
        UPDATE queuectl.job_counts c SET n = c.n + d.n
        FROM (
            SELECT state, sum(delta) AS n FROM (
                SELECT state, 1 AS delta FROM new_rows
                UNION ALL SELECT state, -1 FROM old_rows
            ) changes GROUP BY state
        ) d
        WHERE c.state = d.state AND c.shard = pg_backend_pid() % {COUNT_SHARDS} AND d.n <> 0;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON queuectl.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_jobs();
CREATE TRIGGER jobs_counted_on_update AFTER UPDATE ON queuectl.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_jobs();
CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON queuectl.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_jobs();
CREATE TRIGGER jobs_counted_on_truncate AFTER TRUNCATE ON queuectl.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_jobs();
""",
    # Job control: cancelling, where and with what variables a job runs, output byte counts,
    # pausing. The new columns are NULL or a constant default, so adding them rewrites nothing;
    # only the new CHECK and the new index read the table, under the lock that ALTER TABLE
    # takes anyway (about a second per million jobs).
    3: f"""
ALTER TABLE queuectl.jobs
    ADD COLUMN cwd text,
    ADD COLUMN enqueued_from text,
    ADD COLUMN env text,  -- JSON object of the job's variables
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT jobs_state_check,
    ADD CONSTRAINT jobs_state_check
        CHECK (state IN ('pending', 'processing', 'failed', 'completed', 'dead', 'cancelled'));
ALTER TABLE queuectl.attempts ADD COLUMN stdout_bytes bigint, ADD COLUMN stderr_bytes bigint;
-- Pools with a retention prune a batch of the oldest finished jobs every minute: without this
-- index each time a scan of the whole table (0.15 s with nothing to delete, 0.5 s for 1000 of a
-- million jobs), with it a few ms. Only a job's move to a finished state writes to it, a move
-- that updates another index (state) anyway; its cost was below the noise of measuring.
CREATE INDEX jobs_finished ON queuectl.jobs (updated_at, seq)
    WHERE state IN ('completed', 'dead', 'cancelled');
-- No job could be cancelled before: the count starts at zero (the lock above keeps writers out).
INSERT INTO queuectl.job_counts (state, shard, n)
    SELECT 'cancelled', g.shard, 0 FROM generate_series(0, {COUNT_SHARDS - 1}) AS g(shard);
-- An edit that makes a waiting job due now wakes the pools too.
DROP TRIGGER jobs_claimable ON queuectl.jobs;
CREATE TRIGGER jobs_claimable AFTER INSERT OR UPDATE OF state, run_at ON queuectl.jobs
    FOR EACH ROW WHEN (NEW.state IN ('pending', 'failed') AND NEW.run_at <= now())
    EXECUTE FUNCTION queuectl.notify_claimable();
-- The pool running a job must stop it at once, whoever asked (PostgreSQL folds the
-- notifications of one transaction into one, however many jobs it cancels).
CREATE TRIGGER jobs_cancel_requested AFTER UPDATE OF cancel_requested ON queuectl.jobs
    FOR EACH ROW WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested)
    EXECUTE FUNCTION queuectl.notify_claimable();
-- A resumed queue may have claimable jobs that no pool was told of while it was paused.
-- ('paused' is base.PAUSED_KEY, written out: a migration must not change with the code.)
CREATE TRIGGER config_resumed AFTER DELETE ON queuectl.config
    FOR EACH ROW WHEN (OLD.key = 'paused')
    EXECUTE FUNCTION queuectl.notify_claimable();
""",
    # Groups, tags, params and results (NULL for older jobs: nothing is rewritten). Counts per
    # group and state, kept like job_counts (one row per shard, statement triggers), so that
    # `status` with a thousand groups reads those rows, not the jobs. Rows are added in key
    # order, so no two statements wait for each other in a circle.
    4: f"""
ALTER TABLE queuectl.jobs
    ADD COLUMN job_group text,
    ADD COLUMN tags text,  -- JSON list
    ADD COLUMN params text;  -- JSON object
ALTER TABLE queuectl.attempts ADD COLUMN result text;  -- JSON object from $QUEUECTL_RESULT
CREATE INDEX jobs_by_group ON queuectl.jobs (job_group, seq) WHERE job_group IS NOT NULL;
CREATE TABLE queuectl.group_counts (
    job_group text NOT NULL,
    state text NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (job_group, state, shard)
);
CREATE FUNCTION queuectl.count_groups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Each branch names only the transition tables its event has.)
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM queuectl.group_counts;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO queuectl.group_counts AS c (job_group, state, shard, n)
        SELECT job_group, state, pg_backend_pid() % {COUNT_SHARDS}, count(*) FROM new_rows
        WHERE job_group IS NOT NULL GROUP BY job_group, state ORDER BY job_group, state
        ON CONFLICT (job_group, state, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO queuectl.group_counts AS c (job_group, state, shard, n)
        SELECT job_group, state, pg_backend_pid() % {COUNT_SHARDS}, -count(*) FROM old_rows
        WHERE job_group IS NOT NULL GROUP BY job_group, state ORDER BY job_group, state
        ON CONFLICT (job_group, state, shard) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO queuectl.group_counts AS c (job_group, state, shard, n)
        SELECT job_group, state, pg_backend_pid() % {COUNT_SHARDS}, sum(d) FROM (
            SELECT job_group, state, 1 AS d FROM new_rows WHERE job_group IS NOT NULL
            UNION ALL SELECT job_group, state, -1 FROM old_rows WHERE job_group IS NOT NULL
        ) changes
        GROUP BY job_group, state HAVING sum(d) <> 0 ORDER BY job_group, state
        ON CONFLICT (job_group, state, shard) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_group_counted_on_insert AFTER INSERT ON queuectl.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_groups();
CREATE TRIGGER jobs_group_counted_on_update AFTER UPDATE ON queuectl.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_groups();
CREATE TRIGGER jobs_group_counted_on_delete AFTER DELETE ON queuectl.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_groups();
CREATE TRIGGER jobs_group_counted_on_truncate AFTER TRUNCATE ON queuectl.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION queuectl.count_groups();
""",
    # Attempts are numbered over a job's whole history (a retry no longer starts again at 1):
    # the histories of jobs retried before are renumbered in start order, and an index keeps
    # a number from being given twice (and finds a job's highest number for the next claim).
    5: """
UPDATE queuectl.attempts a SET number = r.n
FROM (
    SELECT id, row_number() OVER (PARTITION BY job_id ORDER BY id) AS n
    FROM queuectl.attempts
    WHERE job_id IN (
        SELECT job_id FROM queuectl.attempts GROUP BY job_id
        HAVING count(*) <> count(DISTINCT number))
) r
WHERE a.id = r.id AND a.number <> r.n;
CREATE UNIQUE INDEX attempts_numbered ON queuectl.attempts (job_id, number);
""",
    # Dependencies (model.dependencies): the state 'blocked', a job's count of parents not yet
    # finished, and the edges in a table of their own. A parent's finish is one statement of a
    # pool, so a trigger releases or cancels its dependents in that statement's transaction;
    # it fires only for jobs that have dependents. The cascade is a loop in the outermost
    # trigger call (the jobs it cancels fire the trigger again, which returns at once), so a
    # chain of any length does not nest calls.
    6: f"""
ALTER TABLE queuectl.jobs
    ADD COLUMN after_rule text CHECK (after_rule IN ('ok', 'any')),
    ADD COLUMN unmet integer NOT NULL DEFAULT 0,
    ADD COLUMN cancelled_by text,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT jobs_state_check,
    ADD CONSTRAINT jobs_state_check CHECK (state IN (
        'blocked', 'pending', 'processing', 'failed', 'completed', 'dead', 'cancelled'));
INSERT INTO queuectl.job_counts (state, shard, n)
    SELECT 'blocked', g.shard, 0 FROM generate_series(0, {COUNT_SHARDS - 1}) AS g(shard);
CREATE TABLE queuectl.job_edges (
    parent text NOT NULL,
    child text NOT NULL,
    PRIMARY KEY (parent, child)
);
CREATE INDEX job_edges_by_child ON queuectl.job_edges (child, parent);
CREATE FUNCTION queuectl.settle_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parents text[] := ARRAY[NEW.id];
    states text[] := ARRAY[NEW.state];
    cancelled text[];
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    WHILE cardinality(parents) > 0 LOOP
        -- Under 'ok', a parent that did not complete cancels its blocked dependents.
        WITH gone AS (
            UPDATE queuectl.jobs c SET state = 'cancelled', unmet = 0, cancelled_by = p.id,
                last_error = 'parent ' || p.id || ' is ' || p.state, updated_at = NEW.updated_at
            FROM queuectl.job_edges e JOIN unnest(parents, states) AS p(id, state)
                ON p.id = e.parent
            WHERE c.id = e.child AND c.state = 'blocked' AND c.after_rule = 'ok'
                AND p.state <> 'completed'
            RETURNING c.id, c.has_children
        )
        SELECT coalesce(array_agg(id) FILTER (WHERE has_children), '{{}}') INTO cancelled
        FROM gone;
        -- Every other blocked dependent counts those parents off, and goes at zero.
        UPDATE queuectl.jobs c SET unmet = c.unmet - d.n,
            state = CASE WHEN c.unmet - d.n <= 0 THEN 'pending' ELSE 'blocked' END,
            updated_at = NEW.updated_at
        FROM (
            SELECT e.child, count(*) AS n
            FROM queuectl.job_edges e JOIN unnest(parents) AS p(id) ON p.id = e.parent
            GROUP BY e.child
        ) d
        WHERE c.id = d.child AND c.state = 'blocked';
        parents := cancelled;
        states := array_fill('cancelled'::text, ARRAY[cardinality(cancelled)]);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF state ON queuectl.jobs
    FOR EACH ROW WHEN (NEW.has_children
        AND NEW.state IN ('completed', 'dead', 'cancelled')
        AND OLD.state NOT IN ('completed', 'dead', 'cancelled'))
    EXECUTE FUNCTION queuectl.settle_dependents();
""",
}


class TooNew(Exception):
    """The database holds a schema written by a newer queuectl."""


class NotOurs(Exception):
    """The database has a ``queuectl`` schema that queuectl did not make."""


def prepare(conn: psycopg.Connection[Any]) -> None:
    """Bring the schema to ``VERSION``; only reads when it is current."""
    version = _version(conn)
    if version == VERSION:
        return
    if version is not None and version > VERSION:
        raise TooNew(version)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        version = _version(conn)  # another process may have done it while we waited
        if version is None:
            if _schema_has_tables(conn):
                raise NotOurs()
            conn.execute("CREATE SCHEMA IF NOT EXISTS queuectl")
            conn.execute("CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL)")
            version = 0
        if version > VERSION:
            raise TooNew(version)
        for step in range(version + 1, VERSION + 1):
            conn.execute(MIGRATIONS[step])  # no parameters: one script, many statements
        conn.execute(
            "INSERT INTO queuectl.meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(VERSION),),
        )


def _version(conn: psycopg.Connection[Any]) -> int | None:
    # Read the catalog itself: to_regclass() would answer from this session's cache, which
    # can miss a table that another session created while we waited for the lock.
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_tables "
        "WHERE schemaname = 'queuectl' AND tablename = 'meta')"
    ).fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT value FROM queuectl.meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else 0


def _schema_has_tables(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'queuectl'"
    ).fetchone()
    return bool(row and row[0])


# What libpq says when it cannot connect, and what the user should check.
_CONNECT_HINTS = [
    ("password authentication failed", "check the user name and password in the URL"),
    ("no password supplied", "put the password in the URL or in ~/.pgpass"),
    (r"database \S+ does not exist", "create it (createdb NAME) or fix the name in the URL"),
    (r"role \S+ does not exist", "create that user on the server or fix the user in the URL"),
    ("connection refused", "check the host and port, and that PostgreSQL runs there"),
    ("resolve host|translate host name", "check the host name in the URL"),
    ("timeout expired", "check the host and port, and the network between"),
]


def explain(exc: BaseException, where: str, location: str, secret: str | None) -> StoreError:
    """The ``StoreError`` to raise for a psycopg error on the queue at ``where``.

    The password of ``location`` (as given) is blanked out of the text, in whatever
    form libpq put it there; so is ``secret``, the password as libpq parsed it.
    """
    if isinstance(exc, TooNew):
        return SchemaTooNew(
            f"{where} was created by a newer queuectl (schema version {exc.args[0]}; this one "
            f"knows {VERSION}). Upgrade queuectl to use this queue."
        )
    if isinstance(exc, NotOurs):
        return StoreError(
            f"{where} has a schema named queuectl that was not made by queuectl; "
            "use another database."
        )
    # libpq's first line says what happened; the lines after it are generic advice.
    text = " ".join(str(exc).strip().split("\n")[0].split())
    text = scrub(text, location, "(the details are hidden: they quoted the password)")
    if secret:
        text = text.replace(secret, "***")
    if getattr(exc, "sqlstate", None) == "40P01":  # deadlock_detected
        return StoreError(
            f"the queue {where} had two writers waiting for each other; PostgreSQL stopped "
            "this one, which changed nothing: run it again."
        )
    if isinstance(exc, psycopg.OperationalError) and text.startswith(
        ("connection failed", "failed to resolve", "connection is bad", "could not")
    ):
        reason = text.rsplit(" failed: ", 1)[-1]
        hint = next((h for pattern, h in _CONNECT_HINTS if re.search(pattern, text, re.I)), "")
        return StoreError(
            f"cannot connect to the queue {where}: {reason}" + (f" ({hint})." if hint else ".")
        )
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"lost the connection to the queue {where}: {text}")
    return StoreError(f"the queue {where} failed: {text}")
