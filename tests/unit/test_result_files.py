"""What the result channel keeps of the file a job wrote: ``worker.results.read_result``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from queuectl.worker.results import read_result

LIMIT = 1 << 20


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b'{"loss": 0.5, "m": {"acc": 1}}', {"loss": 0.5, "m": {"acc": 1}}),
        (
            b'{"a": NaN, "b": Infinity, "c": 1e400, "d": 2}',
            {"a": None, "b": None, "c": None, "d": 2},
        ),
        (b"  \n", None),  # created, never written
    ],
)
def test_kept_results(tmp_path: Path, content: bytes, kept: object) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    assert read_result(path, LIMIT) == (kept, None)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),  # deeper than the parser goes
        (b'{"a": "\\ud800"}', "is not valid JSON"),  # a lone surrogate: no UTF-8 to store
        (b'{"a": "\xff"}', "is not valid JSON"),
        (b"[1]", "must hold a JSON object"),
        (b'{"x": "' + b"y" * 100 + b'"}', "more than result_max_bytes (50 bytes)"),
    ],
)
def test_refused_results(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    limit = 50 if b"yyy" in content else LIMIT
    kept, problem = read_result(path, limit)
    assert kept is None and problem is not None and why in problem


def test_no_file_folders_fifos_and_links(tmp_path: Path) -> None:
    assert read_result(tmp_path / "none.json", LIMIT) == (None, None)
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "target").write_text('{"a": 1}')
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for name in ("dir", "fifo"):
        assert "not a regular file" in str(read_result(tmp_path / name, LIMIT)[1])
    assert "could not be read" in str(read_result(tmp_path / "link", LIMIT)[1])
