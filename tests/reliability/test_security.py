"""Security: private files whatever the umask, passwords never printed, output never run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from queuectl.api import connect
from queuectl.store import redact
from tests.conftest import QUEUECTL, Cli, wait_for
from tests.reliability.test_output import octal


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_of_the_default_queue_is_private_even_with_umask_000(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "QUEUECTL_HOME": str(home)}  # the default queue: $QUEUECTL_HOME

    def run(*args: str) -> str:
        proc = subprocess.run(
            [QUEUECTL, *args], env=env, umask=0, capture_output=True, text=True, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    run("enqueue", "--id", "j", "echo hi")
    run("worker", "start")
    wait_for(lambda: json.loads(run("show", "j", "--json"))["state"] == "completed")
    run("worker", "stop", "--wait", "--timeout", "60")
    subprocess.run(["touch", tmp_path / "probe"], umask=0, check=True)
    assert mode(tmp_path / "probe") == 0o666  # the umask really was 000

    assert mode(home) == 0o700
    dirs = [p for p in home.rglob("*") if p.is_dir()]
    files = [p for p in home.rglob("*") if p.is_file()]
    assert {p.name for p in dirs} == {"logs"}
    assert "queue.db" in {p.name for p in files} and any(p.suffix == ".log" for p in files)
    assert {str(p.relative_to(home)): mode(p) for p in dirs} == {"logs": 0o700}
    modes = {}
    for p in files:
        try:
            modes[str(p.relative_to(home))] = oct(mode(p))
        except FileNotFoundError:  # a -wal/-shm the pool's last connection removed meanwhile
            continue
    assert "queue.db" in modes and modes == dict.fromkeys(modes, oct(0o600))


SECRET = "s3cr3t-Pa55"
URLS = [
    f"postgresql://bob:{SECRET}@db.invalid:5432/queue",
    f"postgres://bob:{SECRET}@db.invalid/queue?sslmode=require",
    f"postgresql://bob:{SECRET}@with-at@db.invalid/queue",  # an unescaped '@' in it
    f"postgresql://bob@db.invalid/queue?connect_timeout=1&password={SECRET}",
    f"POSTGRESQL://bob:{SECRET}@db.invalid/queue",
    f"mysql://bob:{SECRET}@db.invalid/queue",
    f"sqlite://bob:{SECRET}@/queue.db",
]
COMMANDS = [["status", "--json"], ["enqueue", "echo hi"], ["worker", "start"], ["worker", "run"]]


@pytest.mark.parametrize("url", URLS[::2], ids=lambda u: u.split(":")[0])
def test_a_password_in_a_queue_url_is_never_printed(tmp_path: Path, url: str) -> None:
    home = tmp_path / "home"
    for args in COMMANDS:
        for how in ("--db", "QUEUECTL_DB"):
            env = {**os.environ, "QUEUECTL_HOME": str(home)}
            if how == "QUEUECTL_DB":
                env["QUEUECTL_DB"] = url
                argv = [QUEUECTL, *args]
            else:
                argv = [QUEUECTL, "--db", url, *args]
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
            )
            assert proc.returncode != 0, (args, how)
            assert proc.stderr.startswith("Error:") and "Traceback" not in proc.stderr
            assert SECRET not in proc.stdout + proc.stderr, (args, how, proc.stderr)
    for path in tmp_path.rglob("*"):  # nor written anywhere, pool logs included
        assert path.is_dir() or SECRET.encode() not in path.read_bytes()
        assert SECRET not in str(path)


def test_redact_hides_every_form_of_password() -> None:
    for url in URLS:
        assert SECRET not in redact(url)
    assert redact("postgresql://bob@db/q") == "postgresql://bob@db/q"  # nothing to hide
    assert redact("/srv/queue.db") == "/srv/queue.db"


# Output that would do something if it were interpreted: by a shell, a terminal or a JSON reader.
HOSTILE = (
    b"$(touch pwned-dollar) `touch pwned-backtick` ${IFS}; touch pwned-semicolon\n"
    b'{"state": "dead", "id": "other", "stdout": "forged"}\n'
    b"\x1b[2J\x1b[H\x1b]0;title\x07\x1b]52;c;cHduZWQ=\x07\x1b[31mred\x1b[0m\r"
    b"Error: not really an error\n%s%n%x {0} {{x}}\x00\x7f\n"
)


def test_job_output_is_stored_never_interpreted(rcli: Cli, tmp_path: Path) -> None:
    rcli.run(
        "enqueue", "--id", "hostile", f"printf '{octal(HOSTILE)}'; printf '{octal(HOSTILE)}' >&2"
    )
    rcli.run("worker", "run", "--until-empty", timeout=120)
    raw = subprocess.run(
        [QUEUECTL, "logs", "hostile"], env=rcli.env, capture_output=True, cwd=tmp_path
    )
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, HOSTILE, HOSTILE)
    job = rcli.json("show", "hostile")
    assert (job["id"], job["state"]) == ("hostile", "completed")
    assert job["history"][0]["stdout"].encode("utf-8", "surrogateescape") == HOSTILE
    assert [j["id"] for j in rcli.json("list")] == ["hostile"]  # no forged job appeared
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))


# libpq quotes what it cannot parse, password included; a key=value string is no file name.
UNPARSABLE = [
    f"postgresql://bob:{SECRET}%zz@db.invalid/queue",
    f"postgresql://bob@db.invalid/queue?password={SECRET}%zz",
    f"postgresql://bob@db.invalid/queue?password=ab%zz{SECRET}&sslmode=require",
    f"host=db.invalid password='{SECRET} unterminated",
    f"host=/nonexistent dbname=queue password={SECRET} connect_timeout=1",
    f"postgresql://bob:{SECRET}@/queue?host=/nonexistent",
]


@pytest.mark.parametrize("target", UNPARSABLE, ids=range(len(UNPARSABLE)))
def test_libpq_errors_never_show_the_password(tmp_path: Path, target: str) -> None:
    env = {**os.environ, "QUEUECTL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [QUEUECTL, "--db", target, "status"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode in (1, 2) and proc.stderr.startswith("Error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and "zz" not in proc.stderr, proc.stderr
    assert "PostgreSQL" in proc.stderr or "connect" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no file named after it, no home


@pytest.mark.postgres
def test_a_libpq_connection_string_opens_the_postgresql_queue(
    pg_server: Any, tmp_path: Path
) -> None:
    url = pg_server.create_database()
    try:
        parts = conninfo_to_dict(url)
        dsn = " ".join(f"{key}={value}" for key, value in parts.items())
        env = {**os.environ, "QUEUECTL_HOME": str(tmp_path / "home")}
        for args in (["enqueue", "--id", "kv", "true"], ["status", "--json"]):
            proc = subprocess.run(
                [QUEUECTL, "--db", dsn, *args],
                env=env,
                capture_output=True,
                text=True,
                cwd=tmp_path,
            )
            assert proc.returncode == 0, proc.stderr
            assert str(parts["password"]) not in proc.stdout
        assert list(tmp_path.iterdir()) == []
        with connect(url) as queue:
            assert queue.get("kv").command == "true"
    finally:
        pg_server.drop_database(url)


def job_environment(cli: Cli) -> dict[str, str]:
    cli.run("enqueue", "--id", "env", "env")
    cli.run("worker", "run", "--until-empty", timeout=120)
    out = cli.json("show", "env")["history"][-1]["stdout"]
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.postgres
def test_jobs_are_told_the_queue_without_its_password(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.create_database()
    try:
        password = str(conninfo_to_dict(url)["password"])
        cli = Cli(url, tmp_path / "home")
        env = job_environment(cli)
        assert env["QUEUECTL_DB"] == url.replace(f":{password}@", "@")
        assert password not in cli.run("logs", "env").stdout
    finally:
        pg_server.drop_database(url)


def test_jobs_are_told_the_queue_file(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    env = job_environment(Cli(db, tmp_path / "home"))
    assert env["QUEUECTL_DB"] == str(db)  # a job can enqueue into its own queue
