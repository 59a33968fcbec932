"""The terminal front end's live panel: it redraws what the command read, reading it again
after each interval, until Ctrl-C."""

from __future__ import annotations

import sys
import time

import click
import pytest

from queuectl import terminal
from queuectl.commands.results import PanelView
from queuectl.model import QueueStatus


def test_the_panel_redraws_what_it_reads_again_until_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reads: list[str] = []

    def refresh() -> PanelView:
        reads.append(f"read-{len(reads) + 1}")
        return PanelView(QueueStatus(reads[-1], {}, []), [], [], 0, 0.5, refresh=refresh)

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(click, "clear", lambda: print("<clear>"))
    monkeypatch.setattr(time, "sleep", sleep)
    terminal.emit(refresh(), as_json=False)
    out = capsys.readouterr().out
    assert reads == ["read-1", "read-2", "read-3"] and sleeps == [0.5] * 3
    assert out.count("<clear>") == 3 and out.count("Ctrl-C to quit") == 3
    assert out.index("queue: read-1") < out.index("queue: read-2") < out.index("queue: read-3")
    assert "No workers running. Start some with: queuectl worker start --count 2" in out


def test_the_panel_prints_once_when_the_output_is_no_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = PanelView(QueueStatus("q", {}, []), [], [], 0, 0.5, refresh=None)
    terminal.emit(view, as_json=False)
    out = capsys.readouterr().out
    assert out.startswith("queue: q\n") and "Ctrl-C" not in out
    assert out.endswith("Dead letter queue\nThe dead letter queue is empty.\n")
