"""Queue configuration: the keys, their defaults, their aliases and their validation.

Configuration lives in the store, so every worker of a queue sees the same values. Keys are
spelled with ``_``; ``-`` is accepted too. Aliases that users of other queue tools type are
accepted and converted: ``max_retries_default`` is ``max_retries``; ``poll_interval_ms`` /
``job_timeout_ms`` / ``timeout`` are the millisecond forms of ``poll_interval`` /
``job_timeout``, and ``delay_base`` that of ``backoff_base`` (another tool's retry delay is
``(delay_base / 1000) ** attempts`` seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from queuectl.errors import InvalidInput
from queuectl.model.job import Directory


@dataclass(frozen=True)
class Setting:
    """One configuration key: its type, its bounds and what it means (defaults: ``Config``)."""

    name: str
    kind: type[int] | type[float] | type[StrEnum]  #: a StrEnum: one of its values
    low: float
    high: float
    help: str


class Backoff(StrEnum):
    """How retries are spaced (config key ``backoff``): ``backoff_base ** attempts`` seconds,
    at most ``backoff_max``. The key exists for users of tools that name it."""

    EXPONENTIAL = "exponential"


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("max_retries", int, 0, 1000, "retries after the first attempt, for new jobs"),
        Setting("backoff_base", float, 1, 3600, "seconds; retry n waits backoff_base ** n"),
        Setting("backoff_max", float, 0, 7 * 86400, "cap on one backoff delay, seconds"),
        Setting("job_timeout", float, 0, 30 * 86400, "default job timeout, seconds; 0 = none"),
        Setting("lease_seconds", float, 0.2, 86400, "a claim lasts this long without heartbeat"),
        Setting("poll_interval", float, 0.001, 60, "idle wait between claims, seconds"),
        Setting("output_max_bytes", int, 0, 64 << 20, "tail kept per stream per attempt"),
        Setting(
            "retention",
            float,
            0,
            100 * 365 * 86400,
            "pools delete finished jobs older than this, seconds; 0 = keep all",
        ),
        Setting("max_sweep", int, 1, 10_000_000, "most jobs one sweep may enqueue"),
        Setting("result_max_bytes", int, 0, 16 << 20, "largest $QUEUECTL_RESULT file kept"),
        Setting("backoff", Backoff, 0, 0, "how retries are spaced: exponential (the only one)"),
        Setting(
            "job_directory",
            Directory,
            0,
            0,
            "where jobs without --cwd run: enqueuer (where they were enqueued) or pool",
        ),
    )
}

# alias -> (canonical key, factor from the alias's unit to the canonical unit)
ALIASES: dict[str, tuple[str, float]] = {
    "max_retries_default": ("max_retries", 1),
    "poll_interval_ms": ("poll_interval", 0.001),
    "job_timeout_ms": ("job_timeout", 0.001),
    "timeout": ("job_timeout", 0.001),
    "delay_base": ("backoff_base", 0.001),
}


@dataclass(frozen=True)
class Config:
    """The effective configuration of a queue."""

    max_retries: int = 3
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    job_timeout: float = 0.0
    lease_seconds: float = 30.0
    poll_interval: float = 0.2
    output_max_bytes: int = 65536
    retention: float = 0.0
    max_sweep: int = 10_000
    result_max_bytes: int = 65536
    backoff: Backoff = Backoff.EXPONENTIAL
    job_directory: Directory = Directory.ENQUEUER

    @classmethod
    def from_stored(cls, stored: Mapping[str, str]) -> Config:
        """Build from the store's key/value rows; unknown or broken rows keep the default."""
        values: dict[str, Any] = {}
        for name, text in stored.items():
            setting = SETTINGS.get(name)
            if setting is None:
                continue
            try:
                values[name] = _convert(setting, text, 1)
            except InvalidInput:
                continue
        return replace(cls(), **values)

    def as_dict(self) -> dict[str, int | float | str]:
        """All keys with their values, in a stable order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def pool_gone_after(self) -> float:
        """Seconds without a heartbeat after which a worker pool counts as gone.

        Three leases (a pool beats every lease/3, so it missed nine beats), and never under
        10 s, so that a short lease does not bury a pool that is only slow for a moment.
        """
        return max(3 * self.lease_seconds, 10.0)


def normalize_key(key: str) -> str:
    """The key in lower case with ``_`` (``Poll-Interval-MS`` -> ``poll_interval_ms``)."""
    return key.strip().lower().replace("-", "_")


def resolve_key(key: str) -> tuple[str, float]:
    """Return the canonical key for ``key`` and the factor that converts its unit.

    Raises:
        InvalidInput: the key is unknown; the message suggests the closest known key.
    """
    name = normalize_key(key)
    if name in SETTINGS:
        return name, 1
    if name in ALIASES:
        return ALIASES[name]
    known = [*SETTINGS, *ALIASES]
    raise InvalidInput(
        f"unknown config key '{key}'.{did_you_mean(name, known)} Known keys: {', '.join(SETTINGS)}."
    )


def did_you_mean(word: str, known: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``known``, or nothing."""
    import difflib  # only on this error path: the CLI's start stays light

    hint = difflib.get_close_matches(word, known, n=1)
    return f" Did you mean '{hint[0]}'?" if hint else ""


def parse_setting(key: str, raw: str) -> tuple[str, int | float | str]:
    """Validate ``raw`` for ``key`` and return (canonical key, value in canonical units)."""
    name, factor = resolve_key(key)
    return name, _convert(SETTINGS[name], raw, factor)


def display_value(key: str, config: Config) -> int | float | str:
    """The value of ``key`` (canonical or alias) in the unit the key names."""
    name, factor = resolve_key(key)
    value: int | float | str = getattr(config, name)
    if factor == 1 or isinstance(value, str):
        return value
    return round(value / factor, 6)


def _convert(setting: Setting, raw: str, factor: float) -> int | float | str:
    text = str(raw).strip()
    if issubclass(setting.kind, StrEnum):
        choices = [member.value for member in setting.kind]
        if text.lower() in choices:
            return setting.kind(text.lower())
        if len(choices) == 1:
            raise InvalidInput(
                f"invalid value '{raw}' for {setting.name}: only {choices[0]} is supported."
            )
        raise InvalidInput(
            f"invalid value '{raw}' for {setting.name}: choose {' or '.join(choices)}."
        )
    try:
        number = float(text)
    except ValueError:
        raise InvalidInput(
            f"invalid value '{raw}' for {setting.name}: expected a number "
            f"from {_fmt(setting.low)} to {_fmt(setting.high)}."
        ) from None
    if not math.isfinite(number):
        raise InvalidInput(f"invalid value '{raw}' for {setting.name}: must be a finite number.")
    number *= factor
    if setting.kind is int:
        if number != int(number):
            raise InvalidInput(f"invalid value '{raw}' for {setting.name}: must be a whole number.")
        number = int(number)
    if not setting.low <= number <= setting.high:
        raise InvalidInput(
            f"invalid value '{raw}' for {setting.name}: must be between "
            f"{_fmt(setting.low)} and {_fmt(setting.high)}."
        )
    return setting.kind(number)


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
