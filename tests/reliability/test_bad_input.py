"""Bad input: a clear ``Error:`` message, the documented exit code, and nothing written.

Every case runs on both stores against a queue holding one job, and compares a digest of the
queue before and after: of the file and its WAL, or of every row in PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from queuectl.api import connect
from tests.conftest import QUEUECTL, Cli
from tests.reliability.conftest import Figure

BIG_ID = "x" * 10_000
HALF_COMMAND = "x" * 100_000  # two of them: more than one shell command may hold
NOT_UTF8 = b"\xff".decode("utf-8", "surrogateescape")  # a byte of argv that is not UTF-8

# (arguments, exit code, text the message must contain)
CASES: list[tuple[list[str], int, str | tuple[str, ...]]] = [
    (["enqueue", "{not json"], 2, "invalid job JSON"),
    (["enqueue", '{"command": "echo", }'], 2, "invalid job JSON"),
    (["enqueue", '{"id": "a"}'], 2, "no command"),
    (["enqueue", '{"command": ""}'], 2, "command is empty"),
    (["enqueue", '{"command": "   "}'], 2, "command is empty"),
    (["enqueue", '{"command": 5}'], 2, "command must be a string"),
    (["enqueue", '{"command": "echo", "priorty": 1}'], 2, "Did you mean 'priority'"),
    (["enqueue", '{"command": "echo", "state": "done"}'], 2, "unknown job field 'state'"),
    (["enqueue", '{"command": "echo", "max_retries": -1}'], 2, "max_retries must be between"),
    (["enqueue", '{"command": "echo", "max_retries": "3"}'], 2, "whole number"),
    (["enqueue", '{"command": "echo", "max_retries": 2.5}'], 2, "whole number"),
    (["enqueue", '{"command": "echo", "max_retries": true}'], 2, "whole number"),
    (["enqueue", '{"command": "echo", "max_retries": 100000}'], 2, "between 0 and 1000"),
    (["enqueue", '{"command": "echo", "priority": 1e300}'], 2, "whole number"),
    (["enqueue", '{"command": "echo", "priority": 99999999999}'], 2, "priority must be between"),
    (["enqueue", '{"command": "echo", "timeout": -1}'], 2, "timeout must be between"),
    (["enqueue", '{"command": "echo", "timeout": NaN}'], 2, "timeout must be between"),
    (["enqueue", '{"command": "echo", "timeout": "10"}'], 2, "number of seconds"),
    (["enqueue", '{"command": "echo", "run_at": "tomorrow"}'], 2, "invalid run_at"),
    (["enqueue", '{"command": "echo", "run_at": 12}'], 2, "ISO 8601"),
    (["enqueue", '{"command": "echo", "run_at": "2030-13-01T00:00:00Z"}'], 2, "invalid run_at"),
    (["enqueue", '{"command": "echo", "run_at": "x", "run_after": "y"}'], 2, "given twice"),
    (["enqueue", '{"command": "echo", "id": "has space"}'], 2, "invalid job id"),
    (["enqueue", '{"command": "echo", "id": ""}'], 2, "invalid job id"),
    (["enqueue", '{"command": "echo", "id": 7}'], 2, "job id must be a string"),
    (["enqueue", "--id", BIG_ID, "echo"], 2, "invalid job id"),
    (["enqueue", "--id", "-dash", "echo"], 2, "invalid job id"),
    (["enqueue", '{"command": "echo \\u0000"}'], 2, "NUL byte"),
    (["enqueue", '{"command": "echo", "timeout": 1e99}'], 2, "timeout must be between"),
    (["enqueue", "--priority", "high", "echo"], 2, "not a valid integer"),
    (["enqueue", "--timeout", "-5", "echo"], 2, "invalid --timeout"),
    (["enqueue", "--timeout", "soon", "echo"], 2, "invalid --timeout"),
    (["enqueue", "--delay", "5 parsecs", "echo"], 2, "invalid delay"),
    (["enqueue", "--delay", "5s", "--run-at", "2030-01-01", "echo"], 2, "not both"),
    (["enqueue", "--priority", "3", '{"command": "echo", "priority": 1}'], 2, "given both"),
    (["enqueue", '{"id": "dup", "command": "echo again"}'], 2, "exists already"),
    (["enqueue", "--run-at", "0001-01-01T00:00:00+01:00", "echo"], 2, "out of range"),
    (["enqueue", '{"command": "echo", "priority": 1' + "0" * 5000 + "}"], 2, "invalid job JSON"),
    (
        # Too deep for json on Python 3.11 and 3.12 (a RecursionError); 3.13 decodes it, and the
        # unknown field is refused instead. Either way: exit 2, nothing written, the cause named.
        ["enqueue", '{"command": "echo", "x": ' + "[" * 5000 + "]" * 5000 + "}"],
        2,
        ("invalid job JSON", "unknown job field 'x'"),
    ),
    (["enqueue"], 2, "give one job"),
    (["list", "--state", "running"], 2, "'running' is not one of"),
    (["list", "--limit", "0"], 2, "0 is not in the range"),
    (["list", "--limit", "many"], 2, "not a valid integer"),
    (["show", "ghost"], 1, "no job with id 'ghost'"),
    (["logs", "ghost"], 1, "no job with id 'ghost'"),
    (["logs", "dup"], 1, "has not run yet"),
    (["logs", "dup", "--attempt", "0"], 2, "not in the range"),
    (["dlq", "retry", "ghost"], 1, "no job with id 'ghost'"),
    (["dlq", "retry", "dup"], 2, "is pending, not dead"),
    (["dlq", "retry", "ghost", "dup"], 1, "no job with id 'ghost'"),
    (["config", "set", "output_max_bytes", "1e12"], 2, "between"),
    (["dlq", "retry"], 2, "give the ids of dead jobs"),
    (["dlq", "retry", "dup", "--all"], 2, "not both"),
    (["config", "set", "max_retry", "3"], 2, "Did you mean 'max_retries'"),
    (["config", "set", "max_retries", "-2"], 2, "between 0 and 1000"),
    (["config", "set", "backoff_base", "nan"], 2, "finite"),
    (["config", "set", "lease_seconds", "forever"], 2, "expected a number"),
    (["config", "get", "colour"], 2, "unknown config key"),
    (["worker", "run", "--count", "0"], 2, "not in the range"),
    (["worker", "start", "--count", "-3"], 2, "not in the range"),
    (["worker", "run", "--poll-interval", "0"], 2, "not in the range"),
    (["frobnicate"], 2, "No such command"),
    (["--db", "mysql://host/db", "status"], 2, "unknown queue URL scheme"),
    (["--db", "", "status"], 2, "the queue location is empty"),
    (["--db", "sqlite://", "status"], 2, "names no file"),
    (["--db", "sqlite://bob:pw@/x.db", "status"], 2, "sqlite://bob:***@/x.db names no file"),
    (["enqueue", "{}"], 2, "no command"),
    (["enqueue", '{"command": "echo"} trailing'], 2, "Extra data"),
    (["enqueue", '{"command": "echo", "command": "ls"}'], 2, "field 'command' is given twice"),
    (["enqueue", "--", ""], 2, "command is empty"),
    (["enqueue", "--", HALF_COMMAND, HALF_COMMAND], 2, "the limit is 131071"),
    (["enqueue", f"echo {NOT_UTF8}"], 2, "not valid UTF-8"),
    (["enqueue", '{"command": "echo ' + NOT_UTF8 + '"}'], 2, "not valid UTF-8"),
    (["enqueue", "--max-retries", "1001", "echo"], 2, "between 0 and 1000"),
    (["enqueue", "--run-at", "yesterday", "echo"], 2, "invalid run_at 'yesterday'"),
    (["enqueue", "--delay", "-5s", "echo"], 2, "invalid delay"),
    (["enqueue", '{"command": "echo", "run_at": "2030-02-30T00:00:00Z"}'], 2, "invalid run_at"),
    (["enqueue", '{"command": "echo", "timeout": Infinity}'], 2, "timeout must be between"),
    (["enqueue", '{"command": "echo", "priority": -1e400}'], 2, "whole number"),
    (["enqueue", '{"command": "echo", "id": "a/b"}'], 2, "invalid job id"),
    (["enqueue", '{"command": "echo", "id": "\u00fcn\u00ef"}'], 2, "invalid job id"),
    (["show"], 2, "Missing argument 'ID'"),
    (["show", NOT_UTF8], 1, "no job with id"),
    (["logs", "dup", "--attempt", "two"], 2, "not a valid integer"),
    (["logs", "dup", "--attempt", "99"], 1, "has no attempt 99"),
    (["dlq", "retry", NOT_UTF8], 1, "no job with id"),
    (["list", "--state", ""], 2, "is not one of"),
    (["status", "extra"], 2, "unexpected extra argument"),
    (["metrics", "--state", "dead"], 2, "No such option"),
    (["wait", "--timeout", "-1"], 2, "not in the range"),
    (["wait", "--timeout", "soon"], 2, "not a valid number"),
    (["panel", "--interval", "0"], 2, "not in the range"),
    (["worker", "stop", "--timeout", "-1"], 2, "not in the range"),
    (["worker", "run", "--count", "257"], 2, "not in the range"),
    (["config", "set", "poll_interval", "0"], 2, "between 0.001 and 60"),
    (["config", "set", "lease_seconds", "inf"], 2, "finite"),
    (["config", "set", "max_retries"], 2, "Missing argument 'VALUE'"),
    # Values that would not come back from every store, or that mean nothing.
    (["enqueue", "--run-at", "9999-12-31T23:59:59.999999Z", "echo"], 2, "out of range"),
    (["enqueue", '{"command": "echo", "run_at": "9999-12-31T23:59:59Z"}'], 2, "out of range"),
    (["list", "--limit", "99999999999999999999"], 2, "not in the range"),
    (["dlq", "list", "--limit", "99999999999999999999"], 2, "not in the range"),
    (["panel", "--interval", "nan"], 2, "not a finite number"),
    (["wait", "--timeout", "nan"], 2, "not a finite number"),
    (["wait", "--timeout", "inf"], 2, "not a finite number"),
    (["worker", "stop", "--timeout", "nan"], 2, "not a finite number"),
    (["enqueue", "--", "\ufeff"], 2, "command is empty"),
    (["--db", "postgresql://bob:pw%zz@db.invalid/q", "status"], 2, "invalid PostgreSQL"),
    (["migrate", "--to", "bogus://x"], 2, "unknown queue URL scheme"),
    (["migrate", "--to", ""], 2, "the queue location is empty"),
    (["config", "set", "bogus", "1"], 2, "unknown config key 'bogus'"),
    # Job control: the seeded job 'dup' is pending.
    (["enqueue", "--env", "LR", "echo"], 2, "write KEY=VALUE"),
    (["enqueue", "--env", "1X=2", "echo"], 2, "invalid variable name"),
    (["enqueue", "--env", "QUEUECTL_DB=x", "echo"], 2, "reserved"),
    (["enqueue", "--env", "A=1", "--env", "A=2", "echo"], 2, "sets A twice"),
    (["enqueue", '{"command": "echo", "env": ["A=1"]}'], 2, "env must be an object"),
    (["enqueue", '{"command": "echo", "env": {"A": [1]}}'], 2, "must be text or a number"),
    (["enqueue", '{"command": "echo", "cwd": ""}'], 2, "cwd is empty"),
    (["enqueue", '{"command": "echo", "cwd": 5}'], 2, "cwd must be a string"),
    (["cancel"], 2, "give the ids of the jobs to cancel"),
    (["cancel", "dup", "--all-pending"], 2, "not both"),
    (["cancel", "dup", "ghost"], 1, "no job with id 'ghost'"),
    (["cancel", "ghost", "dup", "spook"], 1, "no jobs with ids 'ghost', 'spook'"),
    (["cancel", "dup", "--timeout", "-1"], 2, "not in the range"),
    (["retry", "dup"], 2, "job 'dup' is pending, not finished"),
    (["retry", "ghost"], 1, "no job with id 'ghost'"),
    (["retry"], 2, "give the ids of the jobs to run again"),
    (["retry", "dup", "--failed"], 2, "not both"),
    (["cancel", "dup", "--group", "g"], 2, "not both"),
    (["list", "--group", "a b"], 2, "invalid group 'a b'"),
    (["status", "--tag", "-x"], 2, "invalid tag"),
    (["enqueue", "--group", "no spaces", "true"], 2, "invalid group"),
    (["enqueue", "--tag", "", "true"], 2, "invalid tag"),
    (["enqueue", "--param", "lr", "true"], 2, "write NAME=VALUE"),
    (["enqueue", "--param", "1lr=1", "true"], 2, "invalid param name '1lr'"),
    (["enqueue", "--param", "a=1", "--param", "a=2", "true"], 2, "sets a twice"),
    (["enqueue", "--param", "lr=1", "echo {"], 2, "Write literal braces as {{ and }}"),
    (["enqueue", "--param", "lr=1", "echo {rate}"], 2, "placeholder {rate}, which is not a param"),
    (["enqueue", "--param", "lr=1", "echo {lr!r}"], 2, "conversions are not taken"),
    (["enqueue", '{"command": "true", "params": {"a": [1]}}'], 2, "must be text, a number"),
    (["enqueue", '{"command": "true", "params": {"a": null}}'], 2, "got null"),
    (["enqueue", '{"command": "true", "params": [1]}'], 2, "params must be an object"),
    (["enqueue", '{"command": "true", "params": {"lr": 1, "LR": 2}}'], 2, "would both be"),
    (["enqueue", '{"command": "true", "tags": "a b"}'], 2, "invalid tag"),
    (["enqueue", '{"command": "true", "group": 5}'], 2, "invalid group"),
    (["sweep", "--param", "lr=", "--", "echo", "{lr}"], 2, "has no values"),
    (["sweep", "--param", "x=1", "--", "echo", "{y}"], 2, "placeholder {y}"),
    (["sweep", "--param", "seed=3..1", "echo {seed}"], 2, "the range 3..1 is empty"),
    (["sweep", "--param", "n=0..20000", "echo {n}"], 2, "more than max_sweep (10,000)"),
    (["sweep", "--zip", "--param", "a=1,2", "--param", "b=1", "echo {a}{b}"], 2, "as many"),
    (["sweep", "--param", "a=1", "--param", "a=2", "echo {a}"], 2, "given twice"),
    (["sweep", "echo hi"], 2, "Missing option '--param'"),
    (["enqueue", "--param", "x=1", "echo '{x}'"], 2, "{x} is inside quotes"),
    (["enqueue", "--param", "x=1", 'echo "a {x}"'], 2, "{x} is inside quotes"),
    (["sweep", "--param", "x=1,2", "echo ${x}"], 2, "{x} is right after $"),
    (["sweep", "--param", "x=1,2", "echo \\{x}"], 2, "{x} is right after a backslash"),
    (["sweep", "--param", "x=1", "cat <<E\n{x}\nE"], 2, "after a here-document"),
    (["enqueue", "--param", "name=\udcff", "true"], 2, "not valid UTF-8"),
    (["sweep", "--param", "x=1..100000000000", "echo {x}"], 2, "100,000,000,000 jobs"),
    (["dlq", "move", "ghost"], 1, "no job with id 'ghost'"),
    (["dlq", "retry", "dup"], 2, "not dead"),
    (["edit", "dup"], 2, "nothing to change"),
    (["edit", "ghost", "--priority", "1"], 1, "no job with id 'ghost'"),
    (["edit", "dup", "--priority", "x"], 2, "not a valid integer"),
    (["edit", "dup", "--command", ""], 2, "command is empty"),
    (["edit", "dup", "--delay", "1s", "--run-at", "2030-01-01"], 2, "not both"),
    (["edit", "dup", "--timeout", "soon"], 2, "invalid --timeout"),
    (["edit", "dup", "--max-retries", "-1"], 2, "max_retries must be between"),
    (["prune"], 2, "Missing option '--older-than'"),
    (["prune", "--older-than", "forever"], 2, "invalid --older-than"),
    (["prune", "--older-than", "1d", "--state", "pending"], 2, "only finished jobs"),
    (["prune", "--older-than", "1d", "--state", "done"], 2, "unknown state 'done'"),
    (["prune", "--older-than", "1d", "--state", ","], 2, "--state names no state"),
    (["logs", "dup", "--follow", "--attempt", "1"], 2, "without --attempt"),
    (["logs", "ghost", "--follow"], 1, "no job with id 'ghost'"),
    (["config", "set", "job_directory", "home"], 2, "choose enqueuer or pool"),
    (["config", "set", "retention", "-1"], 2, "between 0 and"),
    # Spellings of other queuectl tools
    (["status", "--db", "a.db", "--db", "b.db"], 2, "--db names two queues"),
    (["config", "set", "backoff", "linear"], 2, "only exponential is supported"),
    (["config", "set", "delay-base", "500"], 2, "backoff_base"),
    (["config", "set", "timeout", "soon"], 2, "expected a number"),
]


@pytest.fixture
def seeded(cli: Cli) -> Cli:
    with connect(cli.db) as queue:  # set up through the API: only the refusal is run as a CLI
        queue.enqueue("echo first", id="dup")
    return cli


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=lambda v: str(v)[:50])
def test_bad_input_is_refused_and_writes_nothing(
    seeded: Cli, args: list[str], code: int, message: str | tuple[str, ...]
) -> None:
    before = seeded.checksum()
    proc = seeded.run(*args, check=False)
    assert proc.returncode == code, proc.stderr
    messages = (message,) if isinstance(message, str) else message
    assert any(m in proc.stderr for m in messages), proc.stderr
    assert proc.stderr.startswith(("Error:", "Usage:"))
    assert "Error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert seeded.checksum() == before


def test_there_are_at_least_forty_cases(figure: Figure) -> None:
    assert len(CASES) >= 40
    figure(f"{len(CASES)} bad inputs in the table, each refused on every store, nothing written")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"command": "echo ok"}\n\xff\xfe echo\n', "line 2 is not UTF-8 text (byte 0xff"),
        (b"echo ok\n\xef\xbb\xbf\n\x80", "line 3 is not UTF-8 text"),
    ],
)
def test_a_job_file_that_is_not_utf8_is_refused(
    seeded: Cli, tmp_path: Path, content: bytes, message: str
) -> None:
    before = seeded.checksum()
    jobs = tmp_path / "jobs.txt"
    jobs.write_bytes(content)
    for args in (["--file", str(jobs)], ["--file", "-"]):
        proc = subprocess.run(
            [QUEUECTL, "enqueue", *args], env=seeded.env, input=content, capture_output=True
        )
        assert proc.returncode == 2 and message.encode() in proc.stderr, proc.stderr
        assert b"Traceback" not in proc.stderr
    assert seeded.checksum() == before


def test_byte_order_marks_are_ignored(cli: Cli, tmp_path: Path) -> None:
    """An editor's BOM before a JSON line once turned the job into a shell command."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(
        b'\xef\xbb\xbf{"id": "first", "priority": 3, "command": "true"}\n'
        b'\xef\xbb\xbf{"id": "pasted", "command": "true"}\n'
    )
    assert cli.run("enqueue", "--file", str(jobs)).stdout.split() == ["first", "pasted"]
    assert cli.run("enqueue", '\ufeff{"id": "arg", "command": "true"}').stdout.strip() == "arg"
    assert cli.json("show", "first")["priority"] == 3


def test_a_negative_schema_version_is_not_taken_for_a_queue(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = -1")
    proc = Cli(db, tmp_path / "home").run("status", check=False)
    assert proc.returncode == 1 and "another program" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_that_cannot_be_written_is_a_clean_error(cli: Cli, stream: str) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [QUEUECTL, "status"],
            env=cli.env,
            stdout=full if stream == "stdout" else subprocess.PIPE,
            stderr=full if stream == "stderr" else subprocess.PIPE,
            text=True,
        )
    if stream == "stdout":
        assert proc.returncode == 1
        assert proc.stderr == "Error: cannot write the output: No space left on device.\n"
    else:  # nothing to say it on: the output went out, the exit code is all that is left
        assert proc.returncode == 0 and "queue:" in proc.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(cli: Cli) -> None:
    with connect(cli.db) as queue:
        queue.enqueue_many(["true"] * 3000)  # more than a pipe holds
    proc = subprocess.run(
        f"{QUEUECTL} list --limit 3000 | head -1", shell=True, env=cli.env, capture_output=True
    )
    assert proc.stderr == b"" and proc.stdout.startswith(b"ID")


@pytest.mark.parametrize(
    "args",
    [
        ["config", "get", "colour"],
        ["enqueue", "--delay", "soon", "echo"],
        ["enqueue", '{"command": "echo", "priorty": 1}'],
        ["config", "set", "bogus", "1"],
        ["config", "set", "max_retries", "-5"],
        ["migrate", "--to", "bogus://x"],
        ["enqueue", "--env", "1X=2", "echo"],
        ["edit", "x"],
        ["edit", "x", "--delay", "bogus"],
        ["prune", "--older-than", "1d", "--state", "pending"],
        ["prune", "--older-than", "forever"],
        ["cancel", "x", "--all-pending"],
    ],
)
def test_refused_input_does_not_even_create_the_queue(
    new_queue: Callable[[], str], tmp_path: Path, args: list[str]
) -> None:
    fresh = Cli(new_queue(), tmp_path / "fresh-home")
    assert fresh.run(*args, check=False).returncode == 2
    assert not fresh.exists()
