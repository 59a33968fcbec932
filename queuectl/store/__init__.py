"""Where a queue lives, and opening its store.

A queue is named by ``--db`` (or ``queuectl.connect(...)``), else by ``QUEUECTL_DB``, else it is
``$QUEUECTL_HOME/queue.db`` (``QUEUECTL_HOME`` defaults to ``~/.queuectl``). A name is a path or a
URL: ``sqlite:///relative/queue.db``, ``sqlite:////absolute/queue.db`` (SQLAlchemy's spelling),
or ``postgresql://user@host/db``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from queuectl.errors import InvalidInput, MissingDependency, StoreError
from queuectl.store.base import Store

__all__ = ["Store", "open_store", "queue_home", "redact", "resolve_target"]

# Up to the last "@": a password may hold an unescaped "@" (or "/"); hiding too much is safe.
_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@]*:).*(?P<tail>@)", re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)


def queue_home(create: bool = True) -> Path:
    """The queue home (``QUEUECTL_HOME`` or ``~/.queuectl``), created with mode 0700."""
    home = Path(os.environ.get("QUEUECTL_HOME") or "~/.queuectl").expanduser()
    if create and not home.is_dir():
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            home.chmod(0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise StoreError(f"cannot create the queue home {home}: {exc.strerror}.") from None
    return home


def resolve_target(db: str | None = None) -> str:
    """The queue to use: ``db``, else ``QUEUECTL_DB``, else the default file in the home."""
    for candidate in (db, os.environ.get("QUEUECTL_DB")):
        if candidate is not None and candidate.strip():
            return candidate.strip()
        if candidate is not None:
            raise InvalidInput("the queue location is empty: give a path or a URL.")
    return str(queue_home() / "queue.db")


def redact(target: str) -> str:
    """The target with any password in a URL replaced by ``***``, safe to print."""
    target = _PASSWORD.sub(r"\g<head>***\g<tail>", target)
    return _PASSWORD_PARAM.sub(r"\g<head>***", target)


def open_store(db: str | None = None, clock: Callable[[], float] | None = None) -> Store:
    """Open the store for ``db`` (see the module docstring for how the name is chosen).

    ``clock`` replaces the store's clock (epoch seconds), for tests that move time.
    """
    target = resolve_target(db)
    scheme, sep, rest = target.partition("://")
    if not sep:
        path = target
    elif scheme.lower() == "sqlite":
        if "@" in rest.partition("/")[0]:  # sqlite://user:password@... names no file
            raise InvalidInput(f"the URL {redact(target)} names no file: use sqlite:///path.db.")
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InvalidInput(f"the URL {target} names no file: use sqlite:///path/queue.db.")
    elif scheme.lower() in ("postgresql", "postgres"):
        return _open_postgres(f"{scheme.lower()}://{rest}", clock)  # libpq wants lower case
    else:
        raise InvalidInput(
            f"unknown queue URL scheme '{scheme}://' in {redact(target)}: use a file path, "
            "sqlite:///path/queue.db or postgresql://user@host/db."
        )
    from queuectl.store.sqlite import SqliteStore

    # Absolute now: each thread opens its own connection later, maybe after a chdir.
    file = Path(path).expanduser().absolute()
    if clock is None:
        return SqliteStore(file)
    return SqliteStore(file, clock=clock)


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
