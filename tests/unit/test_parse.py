"""Validation of job input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queuectl.errors import InvalidInput
from queuectl.model.parse import new_job, parse_duration, parse_job_json, parse_time


def test_full_job_json() -> None:
    fields = parse_job_json(
        '{"id":"job1","command":"sleep 2","max_retries":3,"priority":5,'
        '"run_at":"2030-01-01T00:00:00Z","timeout":10}'
    )
    job = new_job(fields)
    assert job.id == "job1"
    assert job.command == "sleep 2"
    assert (job.max_retries, job.priority, job.timeout) == (3, 5, 10.0)
    assert job.run_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_run_after_is_run_at() -> None:
    job = new_job(parse_job_json('{"command":"x","run_after":"2030-01-01T01:00:00+01:00"}'))
    assert job.run_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_unknown_field_suggests_the_closest() -> None:
    with pytest.raises(InvalidInput, match="Did you mean 'priority'"):
        parse_job_json('{"command":"x","priorty":1}')


def test_time_without_offset_is_utc() -> None:
    assert parse_time("2030-01-01T00:00:00") == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("1.5s", 1.5), ("500ms", 0.5), ("10m", 600), ("2h", 7200)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_command_longer_than_the_kernel_takes_is_refused() -> None:
    # Too long for any command line, so only the API can even try it.
    with pytest.raises(InvalidInput, match="the limit is 131071"):
        new_job({"command": "echo " + "y" * 140_000})


@pytest.mark.parametrize(
    "delay", [90, 90.0, "90", "1.5m", timedelta(seconds=90)], ids=["int", "float", "s", "m", "td"]
)
def test_a_delay_is_seconds_for_the_store_to_add_to_its_clock(delay: object) -> None:
    assert new_job({"command": "x", "delay": delay}).delay == 90.0
    assert new_job(parse_job_json('{"command": "x", "delay": "90s"}')).delay == 90.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"delay": "soon"}, "invalid delay 'soon'"),
        ({"delay": -1}, "invalid delay -1"),
        ({"delay": 11 * 365 * 86400}, "more than ten years"),
        ({"delay": 5, "run_at": "2030-01-01"}, "either run_at or delay, not both"),
    ],
)
def test_bad_delays_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        new_job({"command": "x", **fields})
