"""Configuration keys, aliases and validation."""

from __future__ import annotations

import pytest

from queuectl.errors import InvalidInput
from queuectl.model import Config
from queuectl.model.config import SETTINGS, display_value, parse_setting


def test_every_setting_has_a_default() -> None:
    assert set(SETTINGS) == set(Config().as_dict())


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("max_retries", "5", ("max_retries", 5)),
        ("max-retries", "5", ("max_retries", 5)),
        ("max_retries_default", "7", ("max_retries", 7)),
        ("backoff_base", "1.5", ("backoff_base", 1.5)),
        ("poll_interval_ms", "50", ("poll_interval", 0.05)),
        ("poll-interval-ms", "50", ("poll_interval", 0.05)),
        ("job_timeout_ms", "2500", ("job_timeout", 2.5)),
        ("OUTPUT_MAX_BYTES", "1024", ("output_max_bytes", 1024)),
    ],
)
def test_keys_and_aliases(key: str, raw: str, expected: tuple[str, float]) -> None:
    assert parse_setting(key, raw) == expected


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("max_retry", "3", "Did you mean 'max_retries'"),
        ("colour", "3", "unknown config key"),
        ("max_retries", "-1", "between 0 and 1000"),
        ("max_retries", "2.5", "whole number"),
        ("max_retries", "many", "expected a number"),
        ("backoff_base", "nan", "finite"),
        ("backoff_base", "inf", "finite"),
        ("lease_seconds", "0", "between"),
        ("output_max_bytes", "1e12", "between"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(key: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_setting(key, raw)


def test_stored_rows_are_read_back_and_broken_ones_ignored() -> None:
    config = Config.from_stored({"max_retries": "5", "backoff_base": "oops", "old_key": "1"})
    assert config.max_retries == 5
    assert config.backoff_base == 2


def test_alias_is_displayed_in_its_own_unit() -> None:
    config = Config(poll_interval=0.05)
    assert display_value("poll_interval_ms", config) == 50
    assert display_value("poll_interval", config) == 0.05
