"""Disk and file faults: a read-only home or file, a missing folder, a file that is not a queue
or is from a newer queuectl. Each gives a clear error, no traceback, and no damage.

Tests run as root, which ignores file modes; so read-only means a read-only bind mount, made in
a mount namespace of the command's own (``unshare -m``): the kernel itself refuses the writes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import QUEUECTL, Cli
from tests.store.test_sqlite_file import FAULTS, faulty_file

# Mount PATH read-only in a private mount namespace, then run the command there.
READ_ONLY = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$1" "$1" && shift && exec "$@"']

COMMANDS = [
    ["enqueue", "echo hi"],
    ["worker", "run", "--until-empty"],
    ["worker", "start"],
    ["config", "set", "max_retries", "2"],
    ["dlq", "retry", "--all"],
    ["list"],
]


@pytest.fixture(scope="module")
def read_only_mounts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Read-only bind mounts work here (root, or CAP_SYS_ADMIN): else skip, loudly; in CI fail."""
    probe = tmp_path_factory.mktemp("probe")
    proc = subprocess.run(
        [*READ_ONLY, "sh", str(probe), "touch", str(probe / "x")], capture_output=True, text=True
    )
    if "Read-only file system" not in proc.stderr:
        reason = f"READ-ONLY TESTS NOT RUN: cannot make a read-only bind mount: {proc.stderr}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def run_read_only(cli: Cli, mount: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*READ_ONLY, "sh", str(mount), QUEUECTL, *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def digest(*paths: Path) -> dict[str, str]:
    def one(path: Path) -> str:
        if path.is_dir():
            return f"directory of {sorted(p.name for p in path.iterdir())}"
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"

    return {path.name: one(path) for path in paths}


def assert_clear_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error:") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.fixture
def queue(cli: Cli) -> Cli:
    """A queue file with one pending job, closed (no WAL left)."""
    cli.run("enqueue", "--id", "kept", "echo kept")
    return cli


@pytest.mark.usefixtures("read_only_mounts")
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_read_only_queue_home(queue: Cli, tmp_path: Path, args: list[str]) -> None:
    before = queue.checksum()
    proc = run_read_only(queue, tmp_path, *args)
    assert_clear_error(proc, f"cannot open the queue database {queue.db}")
    assert queue.checksum() == before
    assert queue.json("show", "kept")["state"] == "pending"


@pytest.mark.usefixtures("read_only_mounts")
@pytest.mark.parametrize("args", COMMANDS[:-1], ids=" ".join)
def test_read_only_database_file(queue: Cli, args: list[str]) -> None:
    db = Path(queue.db)
    before = digest(db)
    proc = run_read_only(queue, db, *args)
    assert_clear_error(proc, f"the queue database {db} is read-only")
    assert digest(db) == before
    # Reading still works, and the queue is whole once it is writable again.
    assert "pending           1" in run_read_only(queue, db, "status").stdout
    assert queue.json("show", "kept")["state"] == "pending"


@pytest.mark.usefixtures("read_only_mounts")
def test_read_only_folder_of_a_new_queue(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    home = Cli(folder / "new.db", folder / "home")
    assert_clear_error(
        run_read_only(home, folder, "enqueue", "echo hi"),
        f"cannot create the queue database {folder / 'new.db'}: Read-only file system",
    )
    del home.env["QUEUECTL_DB"]  # the default queue, in a home that cannot be made
    assert_clear_error(
        run_read_only(home, folder, "status"),
        f"cannot create the queue home {folder / 'home'}: Read-only file system",
    )
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(("kind", "message"), [(kind, message) for kind, message, _ in FAULTS])
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_unusable_files_with_every_kind_of_command(
    tmp_path: Path, kind: str, message: str, args: list[str]
) -> None:
    path = faulty_file(tmp_path, kind)
    siblings = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]
    before = digest(*siblings)
    proc = Cli(path, tmp_path / "home").run(*args, check=False)
    assert_clear_error(proc, message)
    assert digest(*siblings) == before  # not a byte changed, no WAL or journal made
