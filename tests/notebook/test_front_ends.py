"""Each front end names its own way to start a pool; the API names only its own; and a delay
is counted by the store, whichever front end gives it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.lib.pretty import pretty

import queuectl
from queuectl.cli import main
from queuectl.errors import NoWorkers

Magic = Callable[[str], Any]


def test_with_no_pool_each_front_end_says_how_it_starts_one(
    magic: Magic, queue: queuectl.Queue, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue.enqueue("true")
    with pytest.raises(NoWorkers, match=r"running: start one \(q\.start_workers\(n\)\), then"):
        queue.wait()
    with pytest.raises(UsageError, match=r"start one \(%queuectl worker start --count 2\), then"):
        magic("wait")
    capsys.readouterr()
    assert main(["--db", str(db_path), "wait"]) == 1
    assert "start one (queuectl worker start --count 2), then" in capsys.readouterr().err

    assert str(queue.status()).endswith("\nNo workers running.")  # the API: no front end
    assert pretty(queue.status()) == str(queue.status())
    shown = magic("status")
    assert isinstance(shown, queuectl.QueueStatus)
    hint = "\nNo workers running. Start some with: %queuectl worker start --count 2"
    assert pretty(shown).endswith(hint) and str(shown).endswith(hint)
    magic("panel --once")
    assert hint in capsys.readouterr().out
    assert main(["--db", str(db_path), "status"]) == 0
    assert capsys.readouterr().out.endswith("Start some with: queuectl worker start --count 2\n")


def _waits(job: dict[str, Any]) -> timedelta:
    return datetime.fromisoformat(job["run_at"]) - datetime.fromisoformat(job["created_at"])


def test_a_delay_is_counted_by_the_store_from_every_front_end(
    magic: Magic, queue: queuectl.Queue, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue.enqueue("true", id="api", delay=30)
    queue.enqueue_many([{"command": "true", "id": "many", "delay": timedelta(minutes=1)}])
    magic("""enqueue '{"id": "json", "command": "true", "delay": "2m"}'""")
    magic("enqueue --id option --delay 1h true")
    capsys.readouterr()
    assert main(["--db", str(db_path), "enqueue", "--json", "--delay", "10m", "true"]) == 0
    (cli_job,) = json.loads(capsys.readouterr().out)
    waits = {job.id: job.run_at - job.created_at for job in queue.job_records()}
    assert waits == {
        "api": timedelta(seconds=30),
        "many": timedelta(minutes=1),
        "json": timedelta(minutes=2),
        "option": timedelta(hours=1),
        cli_job["id"]: timedelta(minutes=10),
    }
    assert _waits(cli_job) == timedelta(minutes=10)
