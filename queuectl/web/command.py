"""The ``dashboard`` click command. Light: the web stack is imported only when it runs."""

from __future__ import annotations

import click

from queuectl.commands.group import Seconds, Session, db_option
from queuectl.commands.results import Message
from queuectl.errors import InvalidInput, MissingDependency

#: the distributions of the ``web`` extra, as their modules are named
WEB_MODULES = {"starlette", "uvicorn", "jinja2", "sse_starlette", "prometheus_client", "anyio"}
TOKEN_VARIABLE = "QUEUECTL_DASHBOARD_TOKEN"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=3030,
    show_default=True,
    help="The port (0: any free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.option("--read-only", is_flag=True, help="No actions: no buttons, POST answers 403.")
@click.option(
    "--token",
    envvar=TOKEN_VARIABLE,
    metavar="TOKEN",
    help=f"Require this token (also ${TOKEN_VARIABLE}): 16 or more letters, digits and "
    "-._~. Default: none on 127.0.0.1, a generated one on any other address.",
)
@click.option(
    "--interval",
    type=Seconds(min=0.2, max=60),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often open pages are updated.",
)
@db_option
@click.pass_obj
def dashboard(
    session: Session,
    host: str,
    port: int,
    open_browser: bool,
    read_only: bool,
    token: str | None,
    interval: float,
) -> Message:
    """Serve a web dashboard of the queue until Ctrl-C: counts, pools, jobs, the DLQ,
    charts, a JSON API under /api/ and Prometheus metrics at /metrics.

    It listens on 127.0.0.1 by default. On any other address a token is required (printed
    with the URL, as Jupyter does). Needs the web extra: pip install 'queuectl[web]'.
    """
    if session.in_kernel:
        raise InvalidInput(
            "the dashboard is a web server that runs until stopped: start it in a terminal "
            "with `queuectl dashboard` (in a notebook, use the panel: %queuectl panel)."
        )
    if token is not None and not token.strip():
        raise InvalidInput("the token is empty: give one, or leave --token out.")
    try:
        from queuectl.web import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in WEB_MODULES:
            raise
        raise MissingDependency(
            f"the dashboard needs the web extra ({exc.name} is missing). "
            "Install it with: pip install 'queuectl[web]'"
        ) from None
    from queuectl.web.security import token_problem

    problem = token is not None and token_problem(token)
    if problem:
        raise InvalidInput(problem)
    settings = server.Settings(host, port, open_browser, read_only, token, interval)
    server.serve(session.queue(), settings)
    return Message("")
