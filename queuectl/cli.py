"""The ``queuectl`` console script: runs the command group and prints results for a terminal.

User mistakes end with ``Error: ...`` on stderr and exit code 2; things not found and runtime
problems with exit code 1. No traceback for either.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from queuectl.commands import Result, Session, cli
from queuectl.errors import QueuectlError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: the process's arguments); return the exit code."""
    session = Session()
    try:
        result = cli.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="queuectl",
            standalone_mode=False,
            obj=session,
        )
        if isinstance(result, Result):
            result.emit(session.as_json)
        return result if isinstance(result, int) else 0
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except QueuectlError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): nothing left to say
        return 141


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())
