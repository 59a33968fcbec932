"""File safety: a queue file, its side files or home that another user could write is refused.

Each test reproduces a defect a security probe found, through the installed CLI. The queue
files of "another user" belong to ``nobody``; root can make them so itself (``chown``). Where
the defect needs queuectl itself to run unprivileged, it runs as ``nobody`` (see ``AsNobody``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queuectl.api import connect
from queuectl.store.file_safety import SIDE_FILES
from tests.conftest import QUEUECTL

NOBODY = "nobody"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def nobody_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip(f"there is no user {NOBODY!r} to play the other user")
    return entry.pw_uid, entry.pw_gid


def give_to_nobody(path: Path, file_mode: int) -> None:
    uid, gid = nobody_ids()
    os.chown(path, uid, gid, follow_symlinks=False)
    path.chmod(file_mode)


def queuectl(
    *args: str, home: Path, cwd: Path, umask: int = 0o022, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed CLI as the test's own user, with QUEUECTL_HOME ``home``."""
    env = {**os.environ, "QUEUECTL_HOME": str(home)}
    return subprocess.run(
        [QUEUECTL, *args],
        env=env,
        cwd=cwd,
        umask=umask,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_refused(proc: subprocess.CompletedProcess[str], *messages: str, code: int = 1) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("Error:"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for message in messages:
        assert message in proc.stderr, proc.stderr


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder other users can reach (pytest's tmp_path is 0700): 0755, ours."""
    path = Path(tempfile.mkdtemp(prefix="queuectl-file-safety-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mine(shared: Path) -> Path:
    """A folder of our own, where a queue may live."""
    path = shared / "mine"
    path.mkdir(mode=0o700)
    return path


# -- another user's file, or one others may write --------------------------------------------


@pytest.mark.parametrize("file_mode", [0o666, 0o600])
def test_root_refuses_an_empty_queue_file_another_user_prepared(
    shared: Path, mine: Path, file_mode: int
) -> None:
    """The probe's attack: nobody makes an empty file in a sticky folder, root initialises it,
    nobody adds a job with sqlite3, root's worker runs it. Now root refuses the file."""
    sticky = shared / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    planted = sticky / "q.db"
    planted.touch()
    give_to_nobody(planted, file_mode)
    proc = queuectl("--db", str(planted), "enqueue", "id", home=mine / "home", cwd=shared)
    assert_refused(proc, f"{planted} belongs to nobody", f"chown {pwd.getpwuid(os.geteuid())[0]}")
    assert planted.read_bytes() == b""  # not initialised
    assert sorted(p.name for p in sticky.iterdir()) == ["q.db"]  # no -journal, no -wal


def test_a_worker_does_not_run_jobs_of_a_queue_another_user_owns(shared: Path, mine: Path) -> None:
    """The attack's second half: a ready queue with a job in it, handed to nobody."""
    marker = shared / "ran"
    db = mine / "q.db"
    with connect(str(db)) as queue:
        queue.enqueue(f"touch {marker}", id="planted")
    give_to_nobody(db, 0o666)
    proc = queuectl("--db", str(db), "worker", "run", "--until-empty", home=mine, cwd=shared)
    assert_refused(proc, f"{db} belongs to nobody")
    assert not marker.exists()


def test_a_queue_file_others_may_write_is_refused(mine: Path) -> None:
    db = mine / "q.db"
    connect(str(db)).close()
    db.chmod(0o666)
    before = db.read_bytes()
    proc = queuectl("--db", str(db), "enqueue", "echo hi", home=mine / "home", cwd=mine)
    assert_refused(proc, "can be written by other users (mode 0666)", f"chmod 600 {db}")
    assert db.read_bytes() == before


@pytest.mark.parametrize("suffix", SIDE_FILES)
@pytest.mark.parametrize("owner", ["nobody", "writable by others"])
def test_side_files_of_another_user_or_writable_by_others_are_refused(
    mine: Path, suffix: str, owner: str
) -> None:
    db = mine / "q.db"
    connect(str(db)).close()
    side = Path(f"{db}{suffix}")
    side.write_bytes(b"")
    if owner == "nobody":
        give_to_nobody(side, 0o600)
        expected = f"{side} belongs to nobody"
    else:
        side.chmod(0o646)
        expected = f"{side} can be written by other users (mode 0646)"
    proc = queuectl("--db", str(db), "status", home=mine / "home", cwd=mine)
    assert_refused(proc, f"SQLite's {suffix} file", expected)


def test_a_queue_in_a_folder_others_may_write_is_refused_sticky_or_not(shared: Path) -> None:
    """Even a file of our own, 0600: in a shared folder, others could plant the -journal
    or -wal that SQLite is about to make (sticky), or replace the file (not sticky)."""
    for folder_mode, risk in [(0o1777, "a -journal or -wal file"), (0o777, "replace the queue")]:
        folder = shared / f"shared-{folder_mode:o}"
        folder.mkdir()
        folder.chmod(folder_mode)
        db = folder / "q.db"
        connect(str(shared / "seed.db")).close()  # a valid queue of ours, moved in
        (shared / "seed.db").rename(db)
        proc = queuectl("--db", str(db), "status", home=shared / "home", cwd=shared)
        assert_refused(proc, f"the folder {folder}, which holds the queue {db}", risk)
        assert sorted(p.name for p in folder.iterdir()) == ["q.db"]


def test_a_folder_of_our_own_inside_a_sticky_shared_folder_is_fine(shared: Path) -> None:
    sticky = shared / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    folder = sticky / "mine"
    folder.mkdir(mode=0o700)
    proc = queuectl("--db", str(folder / "q.db"), "enqueue", "true", home=folder, cwd=shared)
    assert proc.returncode == 0, proc.stderr
    assert mode(folder / "q.db") == 0o600


def test_a_folder_above_the_queue_that_others_may_write_is_refused(shared: Path) -> None:
    """Others could rename the folder below it (not sticky), and put their own in its place."""
    above = shared / "open"
    above.mkdir()
    above.chmod(0o777)
    folder = above / "mine"
    folder.mkdir(mode=0o700)
    proc = queuectl("--db", str(folder / "q.db"), "status", home=folder, cwd=shared)
    assert_refused(proc, f"the folder {above}, above the queue", "not sticky")
    assert list(folder.iterdir()) == []


# -- the home and the folders queuectl makes -------------------------------------------------


def test_an_existing_home_others_may_write_is_refused_and_left_alone(shared: Path) -> None:
    home = shared / "home"
    home.mkdir()
    home.chmod(0o777)
    proc = queuectl("status", home=home, cwd=shared)
    assert_refused(proc, f"the queue home {home} can be written by other users", "chmod 700")
    assert mode(home) == 0o777 and list(home.iterdir()) == []


def test_a_home_of_another_user_is_refused(shared: Path) -> None:
    home = shared / "home"
    home.mkdir(mode=0o700)
    give_to_nobody(home, 0o700)
    proc = queuectl("enqueue", "true", home=home, cwd=shared)
    assert_refused(proc, f"the queue home {home} belongs to nobody")
    assert list(home.iterdir()) == []


def test_a_log_folder_others_may_write_is_refused(mine: Path) -> None:
    logs = mine / "home" / "logs"
    logs.mkdir(parents=True, mode=0o700)
    logs.chmod(0o777)
    proc = queuectl("worker", "start", home=mine / "home", cwd=mine)
    assert_refused(proc, f"the log folder {logs} can be written by other users")
    assert list(logs.iterdir()) == []


def test_umask_000_still_makes_every_missing_folder_0700(mine: Path) -> None:
    home = mine / "a" / "b" / "home"
    proc = queuectl("enqueue", "true", home=home, cwd=mine, umask=0)
    assert proc.returncode == 0, proc.stderr
    made = [mine / "a", mine / "a" / "b", home]
    assert {str(p): oct(mode(p)) for p in made} == {str(p): oct(0o700) for p in made}
    assert mode(home / "queue.db") == 0o600


def test_a_home_that_is_a_link_to_a_private_folder_of_ours_is_used(mine: Path) -> None:
    (mine / "real").mkdir(mode=0o700)
    (mine / "link").symlink_to(mine / "real")
    proc = queuectl("enqueue", "true", home=mine / "link", cwd=mine)
    assert proc.returncode == 0, proc.stderr
    assert (mine / "real" / "queue.db").is_file()


# -- only regular files, never through a link ------------------------------------------------


@pytest.mark.parametrize("dangling", [True, False], ids=["dangling", "to-our-queue"])
def test_a_symlink_at_the_queue_path_is_refused(mine: Path, dangling: bool) -> None:
    target = mine / "target.db"
    if not dangling:
        connect(str(target)).close()
    link = mine / "q.db"
    link.symlink_to(target)
    before = sorted(p.name for p in mine.iterdir())
    proc = queuectl("--db", str(link), "enqueue", "true", home=mine / "home", cwd=mine)
    assert_refused(proc, f"{link} is a symbolic link (to {target}", f"--db {target}")
    assert ("which does not exist" in proc.stderr) == dangling
    assert sorted(p.name for p in mine.iterdir()) == before  # nothing made at the target


def test_links_in_the_folders_above_are_resolved_once(mine: Path) -> None:
    (mine / "real").mkdir(mode=0o700)
    (mine / "via").symlink_to(mine / "real")
    proc = queuectl("--db", str(mine / "via" / "q.db"), "enqueue", "true", home=mine, cwd=mine)
    assert proc.returncode == 0, proc.stderr
    assert (mine / "real" / "q.db").is_file()


def make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


@pytest.mark.parametrize(
    ("make", "kind"), [(make_fifo, "a FIFO"), (make_socket, "a socket")], ids=["fifo", "socket"]
)
def test_a_fifo_or_socket_is_refused_at_once(
    mine: Path, make: Callable[[Path], None], kind: str
) -> None:
    path = mine / "q.db"
    make(path)
    proc = queuectl("--db", str(path), "status", home=mine / "home", cwd=mine, timeout=20)
    assert_refused(proc, f"{path} is {kind}, not a regular file")
    assert [p.name for p in mine.iterdir()] == ["q.db"]


def test_dev_null_is_refused_and_nothing_is_made_next_to_it(mine: Path) -> None:
    journal = Path("/dev/null-journal")
    existed = journal.exists()
    proc = queuectl(
        "--db", "/dev/null", "enqueue", "true", home=mine / "home", cwd=mine, timeout=20
    )
    assert_refused(proc, "/dev/null is a character device")
    assert journal.exists() == existed
    assert not (mine / "home").exists()


# -- bad input writes nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["config", "set", "bogus", "1"],
        ["config", "set", "max_retries", "-5"],
        ["migrate", "--to", "bogus://x"],
        ["migrate", "--to", " "],
        ["migrate", "--to", "sqlite://"],
    ],
    ids=" ".join,
)
def test_invalid_input_on_a_fresh_home_creates_nothing(mine: Path, args: list[str]) -> None:
    home = mine / "home"
    assert_refused(queuectl(*args, home=home, cwd=mine), code=2)
    assert list(mine.iterdir()) == []


# -- permission errors as another user -------------------------------------------------------


class AsNobody:
    """Runs queuectl as ``nobody``, from the installed package.

    The console script runs if ``nobody`` may execute this interpreter; an interpreter under a
    private folder (``/root/.pyenv``) is out of its reach, and then a system Python of the same
    version runs ``-m queuectl`` from a copy of the package and of what it imports, made in
    ``cwd`` (the repository and the venv may be out of reach too).
    """

    def __init__(self, cwd: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("running queuectl as another user needs root")
        nobody_ids()
        if shutil.which("runuser"):
            self.prefix = ["runuser", "-u", NOBODY, "--"]
        elif shutil.which("setpriv"):
            self.prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        else:
            self._unable("neither runuser nor setpriv is installed")
        self.cwd = cwd
        self.env = [f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}"]
        self.argv = [QUEUECTL]
        if self._works():
            return
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
        self.env.append(f"PYTHONPATH={copy_packages(cwd / 'packages')}")
        self.argv = [system or "python3", "-m", "queuectl"]
        if not self._works():
            self._unable(f"{NOBODY} can run neither {QUEUECTL} nor {self.argv[0]} -m queuectl")

    def _unable(self, why: str) -> None:
        reason = f"FILE-SAFETY TESTS AS {NOBODY} NOT RUN: {why}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    def _works(self) -> bool:
        return self.run("--version", home=self.cwd).returncode == 0

    def run(self, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
        env = [*self.env, f"QUEUECTL_HOME={home}"]
        return subprocess.run(
            [*self.prefix, "env", "-i", *env, *self.argv, *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )


def copy_packages(folder: Path) -> Path:
    """Copies of queuectl and the packages its CLI imports, readable by every user."""
    import click
    import inotify_simple

    import queuectl

    ignore = shutil.ignore_patterns("__pycache__")
    for module in (queuectl, click):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, folder / source.name, ignore=ignore)
    shutil.copy(inotify_simple.__file__ or "", folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture
def as_nobody(shared: Path) -> AsNobody:
    return AsNobody(shared)


@pytest.fixture
def nobodys(shared: Path) -> Path:
    """A folder of nobody's own (0700)."""
    path = shared / "nobodys"
    path.mkdir()
    give_to_nobody(path, 0o700)
    return path


def test_a_queue_file_in_a_folder_nobody_may_enter_is_a_clean_error(
    as_nobody: AsNobody, shared: Path, nobodys: Path
) -> None:
    private = shared / "roots"  # as /root is: 0700, root's
    private.mkdir(mode=0o700)
    connect(str(private / "q.db")).close()
    proc = as_nobody.run("--db", str(private / "q.db"), "status", home=nobodys / "home")
    assert_refused(proc, f"cannot use the queue database {private / 'q.db'}: Permission denied")
    proc = as_nobody.run("status", home=private / "home")
    assert_refused(proc, f"cannot create the queue home {private / 'home'}: Permission denied")


def test_an_unreadable_queue_file_is_a_clean_error(as_nobody: AsNobody, nobodys: Path) -> None:
    db = nobodys / "q.db"
    assert as_nobody.run("--db", str(db), "enqueue", "true", home=nobodys).returncode == 0
    db.chmod(0o000)
    proc = as_nobody.run("--db", str(db), "status", home=nobodys)
    assert_refused(proc, f"cannot read the queue database {db}", f"chmod 600 {db}")


def test_an_unprivileged_user_refuses_roots_queue_file_too(
    as_nobody: AsNobody, mine: Path, nobodys: Path
) -> None:
    db = nobodys / "q.db"
    connect(str(mine / "q.db")).close()
    (mine / "q.db").rename(db)  # root's file, in nobody's folder
    db.chmod(0o666)
    proc = as_nobody.run("--db", str(db), "enqueue", "true", home=nobodys)
    assert_refused(proc, f"{db} belongs to root, not to you (nobody)")
