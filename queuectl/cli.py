"""The ``queuectl`` console script: runs the command group and prints results for a terminal.

User mistakes end with ``Error: ...`` on stderr and exit code 2; things not found and runtime
problems with exit code 1. No traceback for either. Output that cannot be written (a full disk)
is exit 1; a reader that went away (``| head``) ends the command quietly with 141, as a shell
pipeline expects. Results are printed by ``queuectl.terminal``; whatever else is printed passes
through ``text.printable``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Sequence

import click

from queuectl.commands import Result, Session, cli
from queuectl.errors import QueuectlError
from queuectl.terminal import emit, error_message
from queuectl.text import printable
from queuectl.web.command import dashboard

cli.add_command(dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: the process's arguments); return the exit code."""
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, where a failure can still be reported
        return code
    except BrokenPipeError:
        _discard_stdout()
        return 141
    except OSError as exc:  # only output gets here: the store's errors are QueuectlErrors
        _discard_stdout()
        _error(f"cannot write the output: {exc.strerror or exc}.")
        return 1


def _run(args: list[str]) -> int:
    session = Session()
    try:
        result = cli.main(args=args, prog_name="queuectl", standalone_mode=False, obj=session)
        if isinstance(result, Result):
            return emit(result, session.as_json) or 0
        return result if isinstance(result, int) else 0
    except click.ClickException as exc:
        shown = io.StringIO()
        exc.show(file=shown)  # the usage line and the message quote what the user typed
        click.echo(printable(shown.getvalue()), err=True, nl=False)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except QueuectlError as exc:
        _error(error_message(exc))
        return exc.exit_code


def _error(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr gone too: the exit code is all that is left
        click.echo(f"Error: {printable(message)}", err=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail (and print) again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())
