"""Where a queue lives (its location), and opening its store.

A queue is named by ``--db`` (or ``queuectl.connect(...)``), else by ``QUEUECTL_DB``, else it is
``$QUEUECTL_HOME/queue.db`` (``QUEUECTL_HOME`` defaults to ``~/.queuectl``). A name is a path or a
URL: ``sqlite:///relative/queue.db``, ``sqlite:////absolute/queue.db`` (SQLAlchemy's spelling),
``postgresql://user@host/db``, or a libpq connection string (``host=db dbname=queue``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from queuectl.errors import InvalidInput, MissingDependency
from queuectl.store.base import Store
from queuectl.store.file_safety import private_folder
from queuectl.store.secrets import is_conninfo, redact

__all__ = ["check_location", "open_store", "queue_home", "redact", "resolve_location"]


def queue_home(create: bool = True) -> Path:
    """The queue home (``QUEUECTL_HOME`` or ``~/.queuectl``).

    ``create``: make it (and its missing parents) 0700, or check that the existing one is ours
    and writable by us alone (see ``file_safety``).
    """
    home = Path(os.environ.get("QUEUECTL_HOME") or "~/.queuectl").expanduser()
    if create:
        private_folder(home)
    return home


def resolve_location(db: str | None = None) -> str:
    """The location to use: ``db``, else ``QUEUECTL_DB``, else the default file in the home."""
    for candidate in (db, os.environ.get("QUEUECTL_DB")):
        if candidate is not None and candidate.strip():
            return candidate.strip()
        if candidate is not None:
            raise InvalidInput("the queue location is empty: give a path or a URL.")
    return str(queue_home() / "queue.db")


def check_location(db: str) -> None:
    """Refuse a queue name that is neither a path nor a known URL, touching nothing.

    For commands that open a second queue (``migrate --to``): invalid input is refused before
    the first queue, or its home, is made.
    """
    _locate(resolve_location(db))


def open_store(db: str | None = None, clock: Callable[[], float] | None = None) -> Store:
    """Open the store for ``db`` (see the module docstring for how the name is chosen).

    ``clock`` replaces the store's clock (epoch seconds), for tests that move time.
    """
    kind, where = _locate(resolve_location(db))
    if kind == "postgres":
        return _open_postgres(where, clock)
    from queuectl.store.sqlite import SqliteStore

    # Absolute now: each thread opens its own connection later, maybe after a chdir.
    file = Path(where).expanduser().absolute()
    if clock is None:
        return SqliteStore(file)
    return SqliteStore(file, clock=clock)


def _locate(location: str) -> tuple[Literal["sqlite", "postgres"], str]:
    """Which store ``location`` names: ``("sqlite", path)`` or ``("postgres", url)``."""
    scheme, sep, rest = location.partition("://")
    if is_conninfo(location):
        return "postgres", location
    if not sep:
        path = location
    elif scheme.lower() == "sqlite":
        if "@" in rest.partition("/")[0]:  # sqlite://user:password@... names no file
            raise InvalidInput(f"the URL {redact(location)} names no file: use sqlite:///path.db.")
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InvalidInput(f"the URL {location} names no file: use sqlite:///path/queue.db.")
    elif scheme.lower() in ("postgresql", "postgres"):
        return "postgres", f"{scheme.lower()}://{rest}"  # libpq wants lower case
    else:
        raise InvalidInput(
            f"unknown queue URL scheme '{scheme}://' in {redact(location)}: use a file path, "
            "sqlite:///path/queue.db or postgresql://user@host/db."
        )
    return "sqlite", path


def _open_postgres(url: str, clock: Callable[[], float] | None) -> Store:
    # Imported here: psycopg is an optional extra, and the CLI's start must stay light.
    try:
        from queuectl.store.postgres import PostgresStore
    except ImportError as exc:
        raise MissingDependency(
            f"PostgreSQL queues ({redact(url)}) need the psycopg package, which could not be "
            f"imported ({exc}). Install it with: pip install 'queuectl[postgres]'"
        ) from None
    return PostgresStore(url, clock=clock)
