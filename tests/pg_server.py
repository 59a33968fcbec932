"""A throwaway PostgreSQL server for the test session.

``initdb`` into a new temporary folder, started with ``pg_ctl`` on 127.0.0.1 (a free port) and
a Unix socket in that folder, ``fsync=off`` because the data dies with the session. PostgreSQL
refuses to run as root, so when the tests run as root the server runs as the ``postgres``
system user (``runuser``), and the folder belongs to that user.

Clients connect over TCP with a password (scram-sha-256), as they would to a real server.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.orphans import claim, orphaned

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
FOLDER_PREFIX = "queuectl-pg-"


def reap_orphans() -> list[Path]:
    """Stop and delete the servers of test sessions that died without doing so (killed, say,
    by a CI timeout); return their folders. Servers of live sessions are left alone."""
    reaped = []
    for root in orphaned(FOLDER_PREFIX):
        with contextlib.suppress(OSError, ValueError, IndexError):
            data = root / "data"
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
            # Only that folder's server: after a crash the pid may belong to another process.
            if str(data).encode() in Path(f"/proc/{postmaster}/cmdline").read_bytes():
                os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown: data is thrown away
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped


def find_bindir() -> Path | None:
    """The folder of the PostgreSQL server programs, newest version first; None if absent.

    ``pg_config --bindir`` names it when the server's pg_config is on the PATH; Debian keeps
    the servers in /usr/lib/postgresql/VERSION/bin, off the PATH.
    """
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(Path(out.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(debian, key=lambda p: _version(p.parent.name), reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in SERVER_PROGRAMS):
            return folder
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PgServer:
    """One PostgreSQL cluster in a temporary folder, with a fresh database per test."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        claim(self.root)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self._names = itertools.count(1)
        # Root may not run PostgreSQL: hand the folder to the postgres system user.
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", SUPERUSER, "--"]

    # -- the server -----------------------------------------------------------------------------

    def _run(self, program: str, *args: str) -> None:
        proc = subprocess.run(
            [*self._as, str(self.bindir / program), *args],
            # Not a pipe: the server inherits pg_ctl's output and would hold a pipe open.
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{proc.stderr}\n{log[-3000:]}")

    def start(self) -> None:
        """Create the cluster on first use, then start the server and wait until it accepts."""
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            if self._as:
                shutil.chown(pwfile, SUPERUSER)
            self._run(
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-sync",
            )
            pwfile.unlink()
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._pg_ctl("start", "-o", options)

    def stop(self) -> None:
        """Stop the server at once (open connections are cut)."""
        self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))

    def restart(self) -> None:
        """Stop and start the server, as an administrator restarting it would."""
        self._pg_ctl("restart", "-m", "fast")

    def _pg_ctl(self, action: str, *args: str) -> None:
        """Start or restart, and wait until the server accepts connections."""
        self._run(
            "pg_ctl", action, "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), *args
        )

    def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------------

    def url(self, dbname: str, password: str | None = None) -> str:
        """How a client reaches ``dbname``: over TCP, with the superuser's password."""
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; return its URL."""
        name = f"q{os.getpid()}_{next(self._names)}"
        # From 15 on, a copy through the WAL is the default: three times slower for tiny
        # databases than copying the files (cheap here, where fsync is off).
        strategy = " STRATEGY = FILE_COPY" if self._version_num() >= 150000 else ""
        self._admin(f"CREATE DATABASE {name}{strategy}")
        return self.url(name)

    @functools.cache  # noqa: B019 - one server per session
    def _version_num(self) -> int:
        import psycopg

        with psycopg.connect(self.url("postgres")) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        return int(row[0]) if row else 0

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database``, cutting its remaining connections."""
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def queue_digest(url: str) -> str:
    """Digest of every row of the queue's tables: proof that nothing was written."""
    import psycopg

    digest = hashlib.sha256()
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'queuectl' "
            "ORDER BY table_name"
        ).fetchall()
        if not tables:
            return "<no queue>"
        for (table,) in tables:
            digest.update(table.encode())
            # Sorted whole: ORDER BY 1 leaves rows with the same first column (job_counts has
            # one per state and shard) in whatever order the scan meets them.
            for row in sorted(repr(row) for row in conn.execute(f"SELECT * FROM queuectl.{table}")):
                digest.update(row.encode())
    return digest.hexdigest()


_session_server: PgServer | None = None


def session_server() -> PgServer:
    """The test session's server, started on first use; skips the test (fails it under
    ``CI=true``) when the server programs are missing."""
    global _session_server
    if _session_server is None:
        import pytest

        bindir = find_bindir()
        if bindir is None:
            reason = (
                "PostgreSQL server programs (initdb, pg_ctl, postgres) not found: the "
                "PostgreSQL store is NOT tested. Install them (Debian: apt-get install postgresql)."
            )
            if os.environ.get("CI") == "true":
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        reap_orphans()
        server = PgServer(bindir)
        try:
            server.start()
        except BaseException:
            server.destroy()
            raise
        _session_server = server
    return _session_server


def destroy_session_server() -> None:
    """Stop and delete the session's server, if one was started."""
    global _session_server
    if _session_server is not None:
        _session_server.destroy()
        _session_server = None
