"""The dashboard in process: its Starlette app on a real queue, called through httpx."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its test client; httpx (the dev extra) still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from queuectl.api import Queue, connect
from queuectl.web.app import create_app
from tests.conftest import QUEUECTL

#: what a browser on this machine sends as Host
LOCAL = "http://127.0.0.1"


@pytest.fixture
def queue(queue_target: str) -> Iterator[Queue]:
    """A fresh queue (an SQLite file, or a PostgreSQL database for the ``postgres`` runs)."""
    with connect(queue_target) as opened:
        yield opened


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[Queue]:
    with connect(str(tmp_path / "queue.db")) as opened:
        yield opened


Client = Callable[..., TestClient]


@pytest.fixture
def make_client() -> Iterator[Client]:
    """``make_client(queue, **options)``: a client of a running dashboard app (lifespan on)."""
    opened: list[TestClient] = []

    def make(queue: Queue, **options: Any) -> TestClient:
        client = TestClient(create_app(queue, interval=0.2, **options), base_url=LOCAL)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def cli_json(db: str, *args: str, home: Path) -> Any:
    """What the installed ``queuectl ARGS --json`` prints for queue ``db``."""
    proc = subprocess.run(
        [QUEUECTL, "--db", db, *args, "--json"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "QUEUECTL_HOME": str(home)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
