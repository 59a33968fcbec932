"""Session set-up for the example notebooks (nbval items under notebooks/).

``04-scale-out.ipynb`` runs against PostgreSQL: before its kernel starts, the notebook gets a
fresh database on the test session's server through ``QUEUECTL_DB`` (and a queue home of its
own), exactly as a user points a notebook at a shared queue. Afterwards both are removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.pg_server import destroy_session_server, session_server

SCALE_OUT = "04-scale-out.ipynb"
_saved: dict[str, str | None] = {}


def _is_scale_out(item: pytest.Item | None) -> bool:
    return item is not None and item.path.name == SCALE_OUT


@pytest.hookimpl(tryfirst=True)  # before nbval starts the notebook's kernel
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _is_scale_out(item) or _saved:
        return
    server = session_server()  # skips (fails under CI=true) without PostgreSQL
    _saved.update({name: os.environ.get(name) for name in ("QUEUECTL_DB", "QUEUECTL_HOME")})
    os.environ["QUEUECTL_DB"] = server.create_database()
    os.environ["QUEUECTL_HOME"] = tempfile.mkdtemp(prefix="queuectl-scale-home-")


@pytest.hookimpl(trylast=True)  # after nbval has shut the kernel down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not _is_scale_out(item) or _is_scale_out(nextitem) or not _saved:
        return
    session_server().drop_database(os.environ["QUEUECTL_DB"])
    shutil.rmtree(os.environ["QUEUECTL_HOME"], ignore_errors=True)
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved.clear()


def pytest_sessionfinish(session: pytest.Session) -> None:
    destroy_session_server()
