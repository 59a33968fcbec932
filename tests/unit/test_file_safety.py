"""Checking a queue name touches nothing; a queue file's path is returned with links resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuectl.errors import InvalidInput, StoreError
from queuectl.store import check_location
from queuectl.store.file_safety import queue_file


@pytest.mark.parametrize(
    "target",
    ["postgresql://bob@db.invalid/q", "host=db.invalid dbname=q", "new.db", "sqlite:///new.db"],
)
def test_check_location_accepts_every_form_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUEUECTL_HOME", str(tmp_path / "home"))
    check_location(target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["bogus://x", "", "sqlite://", "sqlite://bob:pw@/x.db"])
def test_check_location_refuses_bad_names(target: str) -> None:
    with pytest.raises(InvalidInput):
        check_location(target)


def test_queue_file_resolves_the_folders_links(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "via").symlink_to(tmp_path / "real")
    assert queue_file(tmp_path / "via" / "q.db") == tmp_path / "real" / "q.db"
    assert (tmp_path / "real" / "q.db").stat().st_mode & 0o777 == 0o600


def test_queue_file_refuses_a_link_even_to_our_own_queue(tmp_path: Path) -> None:
    queue_file(tmp_path / "q.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "q.db")
    with pytest.raises(StoreError, match="is a symbolic link"):
        queue_file(tmp_path / "link.db")
