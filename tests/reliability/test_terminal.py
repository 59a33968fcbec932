"""Terminal safety: what jobs, errors and hosts hold is shown, never acted on by a terminal.

A command, an error text or a worker's host name may hold escape sequences (set the window
title, clear the screen, recolour it, hide part of a line with backspaces). Every text view
shows them escaped; ``logs`` prints raw bytes by design, says so on a terminal, and
``--safe`` escapes them. JSON escapes them by itself; the notebook panel escapes HTML.
"""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from queuectl.text import has_controls, printable
from tests.conftest import QUEUECTL, Cli, wait_for

ESCAPES = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mX\x08\x08\x9b2J\u202eevil"
#: characters a terminal acts on: none of them may reach the screen
ACTIVE = ["\x1b", "\x07", "\x08", "\x9b", "\u202e"]


def assert_inert(text: str) -> None:
    for char in ACTIVE:
        assert char not in text, (char, text)


def test_printable_escapes_every_control_and_is_idempotent() -> None:
    shown = printable(ESCAPES + "\tkept\nkept\r")
    assert shown == (
        "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mX\\x08\\x08\\x9b2J\\u202eevil\tkept\nkept\\x0d"
    )
    assert printable(shown) == shown
    assert printable("a\tb\nc", multiline=False) == "a\\x09b\\x0ac"
    not_utf8 = b"\xff".decode("utf-8", "surrogateescape")
    assert printable(f"byte {not_utf8}") == "byte \\xff"
    assert has_controls(b"\x1b[31m") and has_controls("\x9b".encode())
    assert not has_controls("plain text, é, tabs\t and lines\r\n".encode())


@pytest.fixture
def hostile(cli: Cli) -> Cli:
    cli.run("enqueue", "--id", "dead1", "--max-retries", "0", "--", f"echo; exit 3 #{ESCAPES}")
    cli.run("worker", "run", "--until-empty")
    cli.run("enqueue", "--id", "evil", "--run-at", "2099-01-01", "--", ESCAPES)
    return cli


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["show", "evil"],
        ["show", "dead1"],
        ["dlq", "list"],
        ["panel", "--once"],
        ["show", f"no{ESCAPES}"],
        [f"no-such-command{ESCAPES}"],
        ["list", "--state", ESCAPES],
    ],
    ids=lambda a: a[0][:12],
)
def test_text_views_and_errors_show_escapes_visibly(hostile: Cli, args: list[str]) -> None:
    proc = hostile.run(*args, check=False)
    assert_inert(proc.stdout + proc.stderr)
    assert "\\x1b" in proc.stdout + proc.stderr  # shown, not dropped


def test_status_shows_a_hostile_host_name_escaped(hostile: Cli) -> None:
    env = {**hostile.env, "QUEUECTL_HOSTNAME": f"h{ESCAPES}"}
    pool = subprocess.Popen([QUEUECTL, "worker", "run"], env=env, stderr=subprocess.DEVNULL)
    try:
        out = wait_for(
            lambda: next((s for s in [hostile.run("status").stdout] if "h\\x1b" in s), "")
        )
        assert "h\\x1b]0;PWNED" in out
        assert_inert(out)
    finally:
        pool.terminate()
        pool.wait(timeout=60)


def test_json_escapes_controls_by_itself(hostile: Cli) -> None:
    proc = hostile.run("show", "evil", "--json")
    assert_inert(proc.stdout)
    assert hostile.json("show", "evil")["command"] == ESCAPES


def run_on_a_terminal(cli: Cli, *args: str) -> tuple[bytes, bytes]:
    """``queuectl ARGS`` with stdout on a pseudo-terminal; its stdout and stderr bytes."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [QUEUECTL, *args], env=cli.env, stdout=follower, stderr=subprocess.PIPE
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            out += chunk
        _, err = proc.communicate(timeout=60)
        return out, err
    finally:
        os.close(leader)


def test_logs_prints_raw_bytes_and_says_so_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    cli.run("enqueue", "--id", "colour", "--", "printf '\\033[31mred\\033[0m\\n'")
    cli.run("enqueue", "--id", "plain", "--", "echo plain")
    cli.run("worker", "run", "--until-empty")
    out, err = run_on_a_terminal(cli, "logs", "colour")
    assert b"\x1b[31mred" in out and b"--safe" in err
    out, err = run_on_a_terminal(cli, "logs", "plain")
    assert b"plain" in out and err == b""
    piped = cli.run("logs", "colour")
    assert "\x1b[31mred" in piped.stdout and piped.stderr == ""  # a pipe gets the bytes as they are
    safe = cli.run("logs", "colour", "--safe")
    assert safe.stdout == "\\x1b[31mred\\x1b[0m\n"


def test_the_notebook_panel_escapes_html(tmp_path: Path) -> None:
    pytest.importorskip("ipywidgets")
    from queuectl.api import connect

    with connect(str(tmp_path / "q.db")) as queue:
        queue.enqueue("<script>alert(1)</script><img src=x onerror=alert(2)>", id="x")
        panel = queue.panel(interval=60)
        try:
            html = panel.recent.value
        finally:
            panel.close()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
