"""Queue files and folders that only their user controls.

An SQLite queue holds commands that workers run: whoever can write it, or can put a file of
theirs where queuectl opens one, runs commands as the queue's user. So, like ssh with its keys,
queuectl uses a queue file, SQLite's ``-wal``, ``-shm`` and ``-journal`` files next to it, and
its home only when they belong to the current user (root too refuses other users' files) and
no one else may write them; anything else is refused with a ``StoreError`` that says the fix.

* Every folder queuectl makes (the home, its missing parents, ``logs``) is created 0700 and
  every file 0600, whatever the umask. An existing home must be ours, writable by us alone.
* The folder holding a queue file must be ours (or root's) and writable by no one else. A
  sticky shared folder such as ``/tmp`` is refused too: others cannot replace our file there,
  but SQLite creates and deletes its side files by name while the queue is in use, and another
  user could create one first (a ``-journal`` is played back into the database), a race no
  check can close. Folders further up must be ours or root's and may be shared only if sticky
  (``/tmp/mine/queue.db`` with ``/tmp/mine`` ours and 0700 is fine).
* A queue file is a regular file: never a symbolic link (not even to our own file: the link
  could be changed later), a FIFO, a device or a socket. A new one is made with ``O_EXCL``.

Symbolic links in the folders above are resolved once, and SQLite opens the resolved path, so a
link changed afterwards cannot redirect it. A queue shared between users belongs in PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from queuectl.errors import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
# O_NONBLOCK: a FIFO swapped in after the check must not block the open.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def private_folder(path: Path, what: str = "the queue home") -> None:
    """Create ``path`` and its missing parents 0700, or check that the existing one is ours alone.

    A symbolic link to a folder is followed (``~/.queuectl`` may live on another disk): the
    folder it leads to is what must be ours.
    """
    try:
        missing = [path, *path.parents]
        first = next(i for i, folder in enumerate(missing) if os.path.lexists(folder))
        for folder in reversed(missing[:first]):
            try:
                os.mkdir(folder, 0o700)  # the umask can only take bits away from 0700...
            except FileExistsError:
                continue  # made meanwhile by another process: checked below like any other
            os.chmod(folder, 0o700)  # ...the owner's ones included
    except OSError as exc:
        raise StoreError(f"cannot create {what} {path}: {exc.strerror}.") from None
    try:
        info = os.stat(path)
    except OSError as exc:
        target = f" (a link to {os.readlink(path)})" if os.path.islink(path) else ""
        raise StoreError(f"cannot use {what} {path}{target}: {exc.strerror}.") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{what} {path} is {_kind(info)}, not a folder: choose another one.")
    _check_private(path, info, f"{what} {path}", "change the queue in it", "chmod 700")


def create_private(path: Path, flags: int) -> int:
    """Create the new file ``path`` (never an existing one, never through a link), mode 0600.

    Returns the open descriptor; raises ``OSError`` (``FileExistsError`` if it exists).
    """
    fd = os.open(path, _CREATE | flags, 0o600)
    os.fchmod(fd, 0o600)  # the umask cannot widen 0600, but may have narrowed it
    return fd


def queue_file(path: Path) -> Path:
    """Check the queue file at ``path``, or create it empty (0600); return the path to open.

    The returned path has the links of its folders resolved (see the module docstring).
    Raises ``StoreError`` for anything unsafe or unusable, before anything is written.
    """
    folder = Path(os.path.realpath(path.parent))
    real = folder / path.name
    try:
        info = _lstat(real)
        if info is not None:
            _check_file(path, real, info, "the queue database")
        _check_folders(path, folder)
        if info is None:
            _create_queue_file(path, real)
        _check_header(path, real)
        for suffix in SIDE_FILES:
            side = Path(f"{real}{suffix}")
            if (side_info := _lstat(side)) is not None:
                _check_file(Path(f"{path}{suffix}"), side, side_info, f"SQLite's {suffix} file")
    except OSError as exc:
        raise StoreError(
            f"cannot use the queue database {path}: {exc.strerror}. Check the permissions of "
            f"the file and of its folders."
        ) from None
    return real


def _create_queue_file(shown: Path, real: Path) -> None:
    try:
        os.close(create_private(real, os.O_WRONLY))
    except FileExistsError:  # another process made it meanwhile: check that one
        _check_file(shown, real, os.lstat(real), "the queue database")
    except OSError as exc:
        raise StoreError(f"cannot create the queue database {shown}: {exc.strerror}.") from None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _check_file(shown: Path, real: Path, info: os.stat_result, what: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        target = Path(real.parent, os.readlink(real))
        gone = "" if os.path.exists(target) else ", which does not exist"
        raise StoreError(
            f"{what} {shown} is a symbolic link (to {target}{gone}); queuectl does not follow "
            f"links at a queue's path, since the link could be changed: name the file itself "
            f"(--db {os.path.realpath(target)})."
        )
    if stat.S_ISDIR(info.st_mode) and what == "the queue database":
        raise StoreError(f"{shown} is a directory, not a queue database file.")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(
            f"{what} {shown} is {_kind(info)}, not a regular file: a queue is an ordinary "
            "file; choose another --db."
        )
    _check_private(shown, info, f"{what} {shown}", "add jobs that your workers run", "chmod 600")


def _check_folders(path: Path, folder: Path) -> None:
    """The folder holding the queue, and every folder above it, are safe (module docstring)."""
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        info = None
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise StoreError(
            f"cannot create the queue database {path}: directory {path.parent} does not "
            "exist. Create it or choose another --db."
        )
    trusted = {os.geteuid(), 0}
    what = f"the folder {folder}, which holds the queue {path},"
    _check_owner(folder, info, what, trusted, f"chmod 700 {folder}")
    if info.st_mode & 0o022:
        risk = (
            "who cannot replace the queue there but could put a -journal or -wal file of "
            "theirs next to it before SQLite makes its own"
            if info.st_mode & stat.S_ISVTX
            else "who could replace the queue"
        )
        raise StoreError(
            f"{what} can be written by other users (mode {_mode(info)}), {risk}. Keep the "
            "queue in a folder of your own (mkdir -m 700 DIR, then --db DIR/queue.db); a "
            "queue shared between users belongs in PostgreSQL."
        )
    for above in folder.parents:
        info = os.stat(above)
        what = f"the folder {above}, above the queue {path},"
        _check_owner(above, info, what, trusted, f"chmod go-w {above}")
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise StoreError(
                f"{what} can be written by other users and is not sticky (mode "
                f"{_mode(info)}): they could rename the folders below it and replace the "
                f"queue. chmod go-w {above}, or keep the queue elsewhere."
            )


def _check_header(shown: Path, real: Path) -> None:
    try:
        fd = os.open(real, _READ)
    except PermissionError:
        raise StoreError(
            f"cannot read the queue database {shown}: permission denied. chmod 600 {shown}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped since the check: refuse all the same
            raise StoreError(f"{shown} is {_kind(info)}, not a regular file.")
        header = os.read(fd, len(SQLITE_HEADER))
    finally:
        os.close(fd)
    if header and header != SQLITE_HEADER:  # empty is fine: we create files that way
        raise StoreError(f"{shown} is not a queuectl queue database (it is not an SQLite file).")


def _check_private(path: Path, info: os.stat_result, label: str, risk: str, chmod: str) -> None:
    """Refuse ``path`` unless it is ours and no one else may write it (``risk``: what they
    could do with it; ``chmod``: the command that makes it private)."""
    _check_owner(path, info, label, {os.geteuid()}, f"{chmod} {path}")
    if info.st_mode & 0o022:
        raise StoreError(
            f"{label} can be written by other users (mode {_mode(info)}), who could {risk}: "
            f"{chmod} {path}"
        )


def _check_owner(path: Path, info: os.stat_result, label: str, trusted: set[int], fix: str) -> None:
    """Refuse ``path`` (described by ``label``) unless a ``trusted`` user owns it."""
    if info.st_uid in trusted:
        return
    me, owner = _user(os.geteuid()), _user(info.st_uid)
    raise StoreError(
        f"{label} belongs to {owner}, not to you ({me}): queuectl uses only its own "
        f"user's queue files, since their owner can make your workers run any command. Use "
        f"one of your own, or, if you trust it, take it over: chown {me} {path} && {fix}"
    )


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _kind(info: os.stat_result) -> str:
    return _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"
