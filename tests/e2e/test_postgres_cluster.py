"""Several hosts on one PostgreSQL queue, and a server restart in the middle of a run.

Hosts are simulated by pool processes with their own host identity (``QUEUECTL_HOSTNAME``);
they share nothing but the database, as pools on different machines would.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.api import Queue, connect
from queuectl.errors import StoreError
from queuectl.model import Outcome, State
from tests.conftest import QUEUECTL, Cli, wait_for
from tests.pg_server import PgServer

pytestmark = pytest.mark.postgres

HOSTS = ("host-a", "host-b", "host-c")


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


def start_pools(cli: Cli, tmp_path: Path, threads: int) -> list[subprocess.Popen[bytes]]:
    """One pool process per host, each logging to its own file."""
    pools = []
    for host in HOSTS:
        with open(tmp_path / f"{host}.log", "wb") as log:
            pools.append(
                subprocess.Popen(
                    [QUEUECTL, "worker", "run", "--count", str(threads)],
                    env={**cli.env, "QUEUECTL_HOSTNAME": host},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    wait_for(lambda: len(cli.json("status")["workers"]) == len(HOSTS), what="all pools")
    return pools


def stop_pools(pools: list[subprocess.Popen[bytes]]) -> None:
    for pool in pools:
        pool.send_signal(signal.SIGTERM)
    for pool in pools:
        assert pool.wait(timeout=60) == 0


def ledger_ids(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().split())


def submit(queue: Queue, ids: list[str], ledger: Path, then: str = "") -> None:
    queue.submit({"id": i, "command": f"echo $QUEUECTL_JOB_ID >> {ledger}{then}"} for i in ids)


def test_three_hosts_drain_5000_jobs_and_run_each_exactly_once(pg_url: str, tmp_path: Path) -> None:
    cli = Cli(pg_url, tmp_path / "home")
    ledger = tmp_path / "ledger"
    ids = [f"j{i:04d}" for i in range(5000)]
    with connect(pg_url) as queue:
        queue.set_config("lease_seconds", 5)
        pools = start_pools(cli, tmp_path, threads=4)
        try:
            status = cli.run("status").stdout
            assert all(host in status for host in HOSTS), status
            submit(queue, ids, ledger)
            assert queue.wait(timeout=240, poll=0.5)
        finally:
            stop_pools(pools)
        attempts = queue.attempt_records()
    assert ledger_ids(ledger) == Counter(ids)  # each command ran once, none was left out
    assert len(attempts) == len(ids)
    assert {a.outcome for a in attempts} == {Outcome.COMPLETED}
    by_host = Counter(a.worker_id.split(":")[0] for a in attempts)
    assert set(by_host) == set(HOSTS), by_host  # every host took its share


def test_a_server_restart_mid_run_loses_nothing(
    pg_url: str, pg_server: PgServer, tmp_path: Path
) -> None:
    cli = Cli(pg_url, tmp_path / "home")
    ledger = tmp_path / "ledger"
    ids = [f"r{i:03d}" for i in range(400)]
    with connect(pg_url) as queue:
        queue.set_config("lease_seconds", 2)
        queue.set_config("backoff_max", 0)
        queue.set_config("poll_interval_ms", 50)
        pools = start_pools(cli, tmp_path, threads=3)
        try:
            submit(queue, ids, ledger, then="; sleep 0.02")
            wait_for(lambda: ledger.exists() and len(ledger_ids(ledger)) > 50, what="progress")
            pg_server.restart()  # every connection is cut while jobs run
            with pytest.raises(StoreError, match="lost the connection to the queue"):
                queue.counts()  # a client learns of it once, then connects again
            assert queue.counts()[State.COMPLETED] < len(ids), "the restart came too late"
            assert queue.wait(timeout=120, poll=0.5)
        finally:
            stop_pools(pools)
        jobs = queue.job_records()
        attempts = queue.attempt_records()
    assert {job.state for job in jobs} == {State.COMPLETED}
    assert set(ledger_ids(ledger)) == set(ids)
    completed = Counter(a.job_id for a in attempts if a.outcome is Outcome.COMPLETED)
    assert completed == Counter(ids)  # one completed attempt per job
    # A run cut off by the restart may be repeated (at-least-once), but only after its
    # attempt was recorded as lost; the pools went on and nothing else failed.
    assert {a.outcome for a in attempts} <= {Outcome.COMPLETED, Outcome.LOST}
    reruns = sum(ledger_ids(ledger).values()) - len(ids)
    assert reruns <= sum(1 for a in attempts if a.outcome is Outcome.LOST)
    logs = [(tmp_path / f"{host}.log").read_text() for host in HOSTS]
    assert all("Traceback" not in log for log in logs)
    assert all("wake-ups work again" in log for log in logs)  # reconnected
