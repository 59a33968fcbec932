"""What only the PostgreSQL store has: connections, its schema, the server's clock, LISTEN/NOTIFY.

The behaviour it shares with SQLite is in the contract suite.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queuectl.errors import InvalidTransition, MissingDependency, SchemaTooNew, StoreError
from queuectl.model import JobChanges, JobFilter, NewJob, Outcome, RunResult, State, Transition
from queuectl.store import open_store, pg_control, pg_schema
from queuectl.store import pg_statements as statements
from queuectl.store.postgres import PostgresStore
from tests.conftest import Cli, wait_for
from tests.pg_server import PgServer, free_port, queue_digest, reap_orphans
from tests.store.test_contract import check_one_attempt_sequence

pytestmark = pytest.mark.postgres

OK = RunResult(Outcome.COMPLETED, 0, None)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = open_store(pg_url)
    assert isinstance(s, PostgresStore)
    yield s
    s.close()


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("password", 'password authentication failed for user "postgres" (check the user'),
        ("database", 'database "no_such_queue" does not exist (create it'),
        ("port", "Connection refused (check the host and port"),
        ("host", "check the host name"),
        ("garbage", "invalid integer value"),
    ],
)
def test_unreachable_queues_give_a_clear_error_without_the_password(
    pg_server: PgServer, tmp_path: object, which: str, message: str
) -> None:
    secret = "s3cret-pw"
    url = {
        "password": pg_server.url("postgres", password=secret),
        "database": pg_server.url("no_such_queue"),
        "port": f"postgresql://postgres:{secret}@127.0.0.1:{free_port()}/q",
        "host": f"postgresql://postgres:{secret}@no-such-host.invalid/q",
        "garbage": f"postgresql://postgres:{secret}@127.0.0.1:notaport/q",
    }[which]
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert message in info.value.message
    assert "cannot connect to the queue postgresql://postgres:***@" in info.value.message
    assert secret not in info.value.message and pg_server.password not in info.value.message
    proc = Cli(url, pg_server.root / "no-home").run("status", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot connect") and message in proc.stderr
    assert "Traceback" not in proc.stderr and secret not in proc.stderr


def test_without_psycopg_the_error_says_what_to_install(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n == "psycopg" or n.startswith("queuectl.store.p")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an uninstalled package looks like
    with pytest.raises(MissingDependency, match=r"pip install 'queuectl\[postgres\]'"):
        open_store(pg_url)
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from queuectl.cli import main; sys.exit(main(['status']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={"QUEUECTL_DB": pg_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: PostgreSQL queues (postgresql://postgres:***@")
    assert "need the psycopg package" in proc.stderr and "Traceback" not in proc.stderr


def test_processes_starting_at_once_create_the_schema_once(pg_url: str) -> None:
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_and_enqueue(n: int) -> None:
        start.wait()
        try:
            store = open_store(pg_url)  # each has its own session, as a process would
            store.enqueue([NewJob("true", f"j{n}")])
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_enqueue, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]
    assert sql(pg_url, "SELECT count(*) FROM queuectl.jobs") == [(8,)]


def test_a_version_1_queue_is_upgraded_with_its_counts(pg_url: str) -> None:
    sql(
        pg_url,
        "CREATE SCHEMA queuectl; "
        "CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL); "
        "INSERT INTO queuectl.meta VALUES ('schema_version', '1'); " + pg_schema.MIGRATIONS[1],
    )
    sql(
        pg_url,
        "INSERT INTO queuectl.jobs (id, command, state, max_retries, run_at, created_at, "
        "updated_at) SELECT 'j' || n, 'true', (ARRAY['pending', 'completed', 'dead'])[n % 3 + 1], "
        "3, now(), now(), now() FROM generate_series(1, 10) AS n",
    )
    store = open_store(pg_url)
    try:
        counts = store.counts()
        assert (counts[State.PENDING], counts[State.COMPLETED], counts[State.DEAD]) == (3, 4, 3)
        store.retry_all_dead()
        store.enqueue([NewJob("true", "new")])
        assert store.counts()[State.PENDING] == 7
    finally:
        store.close()
    assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]


def test_a_version_2_queue_is_upgraded_for_job_control(pg_url: str) -> None:
    sql(
        pg_url,
        "CREATE SCHEMA queuectl; "
        "CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL); "
        "INSERT INTO queuectl.meta VALUES ('schema_version', '2'); "
        + pg_schema.MIGRATIONS[1]
        + pg_schema.MIGRATIONS[2],
    )
    # As version 2 left them: a job in every state, the running one's lease lapsed, and
    # attempts with output but no byte counts.
    sql(
        pg_url,
        "INSERT INTO queuectl.jobs (id, command, state, attempts, max_retries, run_at, "
        "created_at, updated_at) SELECT id, 'echo ' || id, state, n, 3, now(), now(), now() "
        "FROM (VALUES ('p1', 'pending', 0), ('p2', 'pending', 0), ('f1', 'failed', 1), "
        "('c1', 'completed', 1), ('d1', 'dead', 4), ('r1', 'processing', 1)) AS j(id, state, n); "
        "INSERT INTO queuectl.attempts (job_id, number, worker_id, started_at, finished_at, "
        "exit_code, outcome, stdout) VALUES "
        "('c1', 1, 'old', now(), now(), 0, 'completed', 'out'), "
        "('f1', 1, 'old', now(), now(), 1, 'failed', ''), "
        "('r1', 1, 'old', now(), NULL, NULL, NULL, ''); "
        "UPDATE queuectl.jobs j SET worker_id = 'old', lease_until = now() - interval '1 minute', "
        "attempt_id = a.id FROM queuectl.attempts a WHERE a.job_id = 'r1' AND j.id = 'r1'",
    )
    store = PostgresStore(pg_url)
    try:
        assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]
        zero = {state: 0 for state in State}
        assert store.counts() == zero | {
            State.PENDING: 2,
            State.FAILED: 1,
            State.COMPLETED: 1,
            State.DEAD: 1,
            State.PROCESSING: 1,
        }
        old = store.get("c1")
        assert (old.command, old.cwd, old.enqueued_from, dict(old.env)) == (
            "echo c1",
            None,
            None,
            {},
        )
        assert not old.cancel_requested
        (attempt,) = store.attempts("c1")
        assert (attempt.stdout, attempt.outcome, attempt.stdout_bytes) == (
            b"out",
            Outcome.COMPLETED,
            None,
        )
        assert store.cancel(["p1", "r1"]) == {"p1": State.CANCELLED, "r1": State.PROCESSING}
        (lost,) = store.expired()
        assert lost.job.id == "r1" and lost.job.cancel_requested
        assert store.finish(
            lost.fence,
            RunResult(Outcome.LOST, None, "lost"),
            Transition(State.FAILED, 0, "lost"),
            only_if_expired=True,
        )
        store.enqueue([NewJob("true", "new", cwd="/srv", env={"A": "1"})])
        done = RunResult(Outcome.COMPLETED, 0, None, b"x", b"", 1, 0)
        ran = []
        claim = store.claim("w", 30)
        while claim:
            ran.append(claim.job.id)
            _, claim = store.finish_and_claim(
                claim.fence, done, Transition(State.COMPLETED), "w", 30
            )
        assert sorted(ran) == ["f1", "new", "p2"]
        new = store.get("new")
        assert (new.cwd, dict(new.env)) == ("/srv", {"A": "1"})
        assert [a.stdout_bytes for a in store.attempts("new")] == [1]
        assert store.counts() == zero | {State.COMPLETED: 4, State.DEAD: 1, State.CANCELLED: 2}
    finally:
        store.close()


def test_counts_from_many_sessions_add_up(pg_url: str) -> None:
    """Each session counts in its own shard; ``counts`` adds the shards up."""
    stores = [open_store(pg_url) for _ in range(6)]
    try:
        for n, store in enumerate(stores):
            store.enqueue([NewJob("true", f"j{n}-{k}") for k in range(5)])
        claim = stores[0].claim("w", 30)
        while claim:  # claimed in one session, recorded in another
            _, claim = stores[1].finish_and_claim(
                claim.fence, OK, Transition(State.COMPLETED), "w", 30
            )
        assert stores[2].counts() == {state: 0 for state in State} | {State.COMPLETED: 30}
        shards = sql(pg_url, "SELECT count(DISTINCT shard) FROM queuectl.job_counts WHERE n <> 0")
        (count,) = shards[0]
        assert isinstance(count, int) and count > 1
    finally:
        for store in stores:
            store.close()


def test_counts_survive_a_truncate(store: PostgresStore, pg_url: str) -> None:
    store.enqueue([NewJob("true", f"j{n}") for n in range(3)])
    sql(pg_url, "TRUNCATE queuectl.jobs")  # an administrator's, not queuectl's
    assert set(store.counts().values()) == {0}
    store.enqueue([NewJob("true", "again")])
    assert store.counts()[State.PENDING] == 1


def test_a_queue_from_a_newer_queuectl_is_refused_and_left_alone(
    store: PostgresStore, pg_url: str
) -> None:
    url = pg_url
    store.close()
    sql(url, "UPDATE queuectl.meta SET value = '99' WHERE key = 'schema_version'")
    before = queue_digest(url)
    with pytest.raises(SchemaTooNew, match=r"newer queuectl \(schema version 99"):
        PostgresStore(url)
    assert queue_digest(url) == before


def test_a_queuectl_schema_made_by_someone_else_is_refused(pg_url: str) -> None:
    sql(pg_url, "CREATE SCHEMA queuectl; CREATE TABLE queuectl.jobs (x int)")
    with pytest.raises(StoreError, match="schema named queuectl that was not made by queuectl"):
        open_store(pg_url)
    assert sql(pg_url, "SELECT to_regclass('queuectl.meta')") == [(None,)]


def test_times_are_the_servers_in_utc_whatever_this_hosts_clock_and_zone_say(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3 * 3600)  # this host's clock is off
    store = open_store(pg_url + "?options=-c%20timezone%3DAsia/Kathmandu")
    try:
        (server_now,) = sql(pg_url, "SELECT now()")[0]
        assert abs(store.now() - server_now) < timedelta(seconds=5)  # type: ignore[operator]
        assert store.now().utcoffset() == timedelta(0)
        (job,) = store.enqueue([NewJob("true", "a")])
        assert job.created_at.tzinfo == UTC
        assert abs(job.created_at - datetime.fromtimestamp(real(), UTC)) < timedelta(seconds=5)
        claim = store.claim("w", 30)  # claimable at once: run_at is the server's now
        assert claim is not None and claim.job.lease_until is not None
        assert claim.job.lease_until - claim.job.updated_at == timedelta(seconds=30)
        (later,) = store.enqueue([NewJob("true", "later", delay=60)])  # from the server's now
        assert later.run_at - later.created_at == timedelta(seconds=60)
        assert store.claim("w", 30) is None
    finally:
        store.close()


def test_watch_reports_new_work_from_other_clients_and_survives_a_restart(
    store: PostgresStore, pg_url: str, pg_server: PgServer
) -> None:
    woken = threading.Event()
    stop = store.watch(woken.set)
    wait_for(woken.is_set, timeout=10, what="the listener's first look")
    other = open_store(pg_url)
    try:
        woken.clear()
        other.enqueue([NewJob("true", "a")])
        assert woken.wait(5), "no wake-up after an enqueue elsewhere"

        woken.clear()
        other.enqueue([NewJob("true", "later", run_at=other.now() + timedelta(hours=1))])
        assert not woken.wait(1), "a job that is not claimable yet woke the pools"

        pg_server.restart()
        wait_for(woken.is_set, timeout=15, what="the listener reconnecting")
        with pytest.raises(StoreError, match="lost the connection"):
            other.counts()
        woken.clear()
        other.enqueue([NewJob("true", "b")])
        assert woken.wait(5), "no wake-up after the restart"
    finally:
        other.close()
        stop()
    wait_for(
        lambda: "queuectl-listener" not in {t.name for t in threading.enumerate()},
        timeout=5,
        what="the listener to stop",
    )


def test_watch_reports_cancel_requests_resumes_and_edits_from_other_clients(
    store: PostgresStore, pg_url: str
) -> None:
    other = open_store(pg_url)
    other.enqueue([NewJob("true", "running"), NewJob("true", "later", delay=3600)])
    running = other.claim("w", 30)
    assert running is not None and running.job.id == "running"
    other.set_paused(True)
    woken = threading.Event()
    stop = store.watch(woken.set)
    try:
        wait_for(woken.is_set, timeout=10, what="the listener's first look")
        woken.clear()
        other.cancel(["running"])
        assert woken.wait(5), "no wake-up after a cancel request elsewhere"

        woken.clear()
        other.cancel(["running"])  # requested already
        other.set_paused(True)  # paused already
        other.edit("later", JobChanges(priority=5))  # still not due
        assert not woken.wait(1), "a change that asks nothing of the pools woke them"

        other.set_paused(False)
        assert woken.wait(5), "no wake-up after a resume elsewhere"
        woken.clear()
        other.edit("later", JobChanges(delay=0))
        assert woken.wait(5), "no wake-up after an edit made a job due"
    finally:
        other.close()
        stop()


def finished_jobs(store: PostgresStore, *ids: str) -> None:
    store.enqueue([NewJob("true", job_id) for job_id in ids])
    for _ in ids:
        claimed = store.claim("w", 30)
        assert claimed is not None
        assert store.finish(claimed.fence, OK, Transition(State.COMPLETED))


def test_a_prune_that_may_skip_gives_way_to_one_running_elsewhere(
    store: PostgresStore, pg_url: str
) -> None:
    import psycopg

    finished_jobs(store, "a", "b")
    later = store.now() + timedelta(seconds=1)
    with psycopg.connect(pg_url) as elsewhere:  # a transaction that prunes
        elsewhere.execute("SELECT pg_advisory_xact_lock(%s)", (pg_control.PRUNE_LOCK,))
        assert store.prune(later, [State.COMPLETED], skip_if_busy=True) == 0
        assert store.prune(later, [State.COMPLETED], dry_run=True) == 2  # a read: no wait
        elsewhere.rollback()
    assert store.prune(later, [State.COMPLETED], skip_if_busy=True) == 2
    assert store.jobs() == [] and store.attempts() == []


def waiting_for_a_lock(url: str) -> bool:
    found = sql(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    return found == [(1,)]


@pytest.mark.parametrize("limit", [None, 10])
def test_a_job_rerun_while_a_prune_waits_for_it_keeps_its_history(
    store: PostgresStore, pg_url: str, limit: int | None
) -> None:
    import psycopg

    finished_jobs(store, "a", "b")
    later = store.now() + timedelta(seconds=1)
    pruned: list[int] = []
    with psycopg.connect(pg_url) as rerun:  # a retry of 'a', not committed yet
        rerun.execute("UPDATE queuectl.jobs SET state = 'pending', attempts = 0 WHERE id = 'a'")
        pruner = threading.Thread(
            target=lambda: pruned.append(store.prune(later, [State.COMPLETED], limit=limit))
        )
        pruner.start()
        wait_for(lambda: waiting_for_a_lock(pg_url), what="the prune to wait for the row")
        rerun.commit()
    pruner.join()
    assert pruned == [1]
    assert [job.id for job in store.jobs()] == ["a"]
    assert len(store.attempts("a")) == 1
    assert store.counts()[State.PENDING] == 1 and store.counts()[State.COMPLETED] == 0


@pytest.mark.parametrize(
    ("ended", "after"), [(State.FAILED, State.CANCELLED), (State.COMPLETED, None)]
)
def test_a_cancel_that_meets_a_finish_in_flight_acts_on_its_result(
    store: PostgresStore, pg_url: str, ended: State, after: State | None
) -> None:
    """The cancel waits for the job's row, then sees what the finish made of it: a failed job
    is cancelled at once (no request is left on a job no pool runs); a completed one is
    refused."""
    import psycopg

    store.enqueue([NewJob("true", "a")])
    claimed = store.claim("w", 30)
    assert claimed is not None
    result = OK if ended is State.COMPLETED else RunResult(Outcome.FAILED, 1, None)
    outcome: list[object] = []

    def cancel() -> None:
        try:
            outcome.append(store.cancel(["a"]))
        except Exception as exc:
            outcome.append(exc)

    with psycopg.connect(pg_url) as finisher:
        params = statements.finish_params(claimed.fence, result, Transition(ended, 60, "x"))
        assert finisher.execute(statements.FINISH, {"now": None, **params}).fetchall()
        canceller = threading.Thread(target=cancel)
        canceller.start()
        wait_for(lambda: waiting_for_a_lock(pg_url), what="the cancel to wait for the row")
        finisher.commit()
    canceller.join()
    job = store.get("a")
    if after is None:
        assert isinstance(outcome[0], InvalidTransition) and job.state is State.COMPLETED
    else:
        assert outcome == [{"a": after}] and job.state is after
    assert not job.cancel_requested


def test_the_server_of_a_killed_test_session_is_reaped_by_the_next(pg_server: PgServer) -> None:
    """A session killed outright (a CI timeout) cannot stop its server; the next one does."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tests.pg_server import PgServer, find_bindir\n"
            "server = PgServer(find_bindir()); server.start(); print(server.root, flush=True)\n"
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    root = Path(child.stdout.readline().strip())
    postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
    child.kill()
    child.communicate()
    assert root in reap_orphans()
    assert pg_server.root not in reap_orphans()  # a live session's server stays
    wait_for(lambda: not Path(f"/proc/{postmaster}").exists(), what="the orphan server to stop")
    assert not root.exists()


def test_a_version_3_queue_is_upgraded_for_groups_and_results(pg_url: str) -> None:
    sql(
        pg_url,
        "CREATE SCHEMA queuectl; "
        "CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL); "
        "INSERT INTO queuectl.meta VALUES ('schema_version', '3'); "
        + pg_schema.MIGRATIONS[1]
        + pg_schema.MIGRATIONS[2]
        + pg_schema.MIGRATIONS[3],
    )
    sql(
        pg_url,
        "INSERT INTO queuectl.jobs (id, command, state, attempts, max_retries, run_at, "
        "created_at, updated_at) VALUES ('old', 'echo old', 'pending', 0, 0, now(), now(), now())",
    )
    store = PostgresStore(pg_url)
    try:
        assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]
        old = store.get("old")
        assert (old.group, old.tags, dict(old.params)) == (None, (), {})
        store.cancel(["old"])
        store.enqueue([NewJob("true", f"g{n}", group="g", tags=("t",)) for n in range(3)])
        claim = store.claim("w", 30)
        assert claim is not None
        done = RunResult(Outcome.COMPLETED, 0, None, result={"loss": {"train": 0.5}})
        assert store.finish(claim.fence, done, Transition(State.COMPLETED))
        zero = {state: 0 for state in State}
        assert store.group_counts() == {"g": zero | {State.PENDING: 2, State.COMPLETED: 1}}
        assert store.counts(JobFilter(group="g")) == zero | {State.PENDING: 2, State.COMPLETED: 1}
        assert store.counts(JobFilter(tag="t"))[State.PENDING] == 2
        assert store.counts()[State.CANCELLED] == 1
        table = store.result_table(JobFilter(group="g"))
        results = dict(zip(table["id"], table["result"], strict=True))
        assert results == {"g0": '{"loss": {"train": 0.5}}', "g1": None, "g2": None}
    finally:
        store.close()


def test_a_version_4_queue_gets_one_attempt_sequence_per_job(pg_url: str) -> None:
    """Before version 5 a retry numbered its attempts from 1 again: the upgrade renumbers
    such histories in start order and leaves the others, and new attempts count on."""
    sql(
        pg_url,
        "CREATE SCHEMA queuectl; "
        "CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL); "
        "INSERT INTO queuectl.meta VALUES ('schema_version', '4'); "
        + "".join(pg_schema.MIGRATIONS[step] for step in range(1, 5)),
    )
    sql(
        pg_url,
        "INSERT INTO queuectl.jobs (id, command, state, attempts, max_retries, run_at, "
        "created_at, updated_at) VALUES "
        "('retried', 'false', 'dead', 1, 0, now(), now(), now()), "
        "('once', 'true', 'completed', 1, 0, now(), now(), now()); "
        "INSERT INTO queuectl.attempts (job_id, number, worker_id, started_at, finished_at, "
        "exit_code, outcome) VALUES "
        "('retried', 1, 'w', now(), now(), 1, 'failed'), "
        "('retried', 2, 'w', now(), now(), 1, 'failed'), "
        "('retried', 1, 'w', now(), now(), 1, 'failed'), "
        "('once', 4, 'w', now(), now(), 0, 'completed')",  # a gap: kept
    )
    store = PostgresStore(pg_url)
    try:
        assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]
        check_one_attempt_sequence(store)
    finally:
        store.close()


def test_a_version_5_queue_gets_dependencies(pg_url: str) -> None:
    sql(
        pg_url,
        "CREATE SCHEMA queuectl; "
        "CREATE TABLE queuectl.meta (key text PRIMARY KEY, value text NOT NULL); "
        "INSERT INTO queuectl.meta VALUES ('schema_version', '5'); "
        + "".join(pg_schema.MIGRATIONS[step] for step in range(1, 6)),
    )
    sql(
        pg_url,
        "INSERT INTO queuectl.jobs (id, command, state, attempts, max_retries, run_at, "
        "created_at, updated_at, job_group) VALUES "
        "('done', 'true', 'completed', 1, 0, now(), now(), now(), 'g'), "
        "('next', 'true', 'pending', 0, 0, now(), now(), now(), 'g')",
    )
    store = PostgresStore(pg_url)
    try:
        assert sql(pg_url, "SELECT value FROM queuectl.meta") == [(str(pg_schema.VERSION),)]
        assert store.counts()[State.PENDING] == 1 and store.counts()[State.BLOCKED] == 0
        (child,) = store.enqueue([NewJob("true", "child", after=("next", "done"))])
        assert (child.state, child.unmet) == (State.BLOCKED, 1)
        claim = store.claim("w", 30)
        assert claim and claim.job.id == "next"
        done = RunResult(Outcome.COMPLETED, 0, None)
        assert store.finish(claim.fence, done, Transition(State.COMPLETED))
        assert store.get("child").state is State.PENDING
        assert store.group_counts()["g"][State.COMPLETED] == 2
    finally:
        store.close()
