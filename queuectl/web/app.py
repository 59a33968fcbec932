"""The dashboard's Starlette application: its pages, event streams, charts and the API.

Pages are rendered on the server from the same command results as the API (Jinja2,
autoescaped; every job text through ``printable``), and kept live by ``static/dashboard.js``
from the shared event stream (``live``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queuectl.api import Queue
from queuectl.commands.results import JobDetail, JobList, StatusReport, job_json
from queuectl.errors import QueuectlError
from queuectl.model import State
from queuectl.store import redact
from queuectl.web import api, charts, live, metrics
from queuectl.web.api import ApiError, Commands
from queuectl.web.security import Forbidden, Guard, GuardMiddleware, is_loopback
from queuectl.web.views import FILTERS as VIEW_FILTERS
from queuectl.web.views import attempt_view, local_path

PACKAGE = files("queuectl.web")
#: the parents and children a job's page lists (a fan-out may have thousands)
RELATED_SHOWN = 50


def create_app(
    queue: Queue,
    interval: float = 1.0,
    read_only: bool = False,
    token: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Starlette:
    """The dashboard of ``queue`` (which stays open; the caller closes it)."""
    guard = Guard(token, is_loopback(host), port, read_only)
    ticker = live.Ticker(queue, interval)
    commands = Commands(queue)
    templates = Environment(
        loader=FileSystemLoader(str(PACKAGE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(VIEW_FILTERS)
    states = [state.value for state in State]

    def page(name: str, request: Request, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            csrf=guard.csrf,
            read_only=read_only,
            location=queue.location,
            states=states,
            path=request.url.path,
            interval=interval,
            related_shown=RELATED_SHOWN,
            **values,
        )
        return HTMLResponse(html)

    async def run(args: list[str]) -> Any:
        return await run_in_threadpool(commands.run, args)

    async def overview(request: Request) -> Response:
        api.query(request, ())
        frame = await run_in_threadpool(ticker.current)
        shot = frame.snapshot
        return page(
            "index.html",
            request,
            status=StatusReport(shot.status).to_json(),
            jobs=[job_json(job) for job in shot.running_then_newest(live.LISTED)],
            dead=[job_json(job) for job in shot.dead[: live.LISTED]],
            history_version=frame.history_version,
            error=ticker.error or ticker.history_error,
            started_hours=round(live.HISTORY_STARTED / 3600),
            newest=live.HISTORY_NEWEST,
        )

    async def job_list(request: Request, dead_only: bool = False) -> Response:
        # (the DLQ's state is dead: it takes no other)
        allowed = [p for p in api.LIST_PARAMS if not (dead_only and p == "state")]
        params = api.query(request, allowed)
        listed: JobList = await run(api.list_args(params, dead_only, api.PAGE_MAX))
        status: StatusReport = await run(["status", "--json", *api.filter_args(params)])
        limit = api.limit_of(params, api.PAGE_MAX)
        path = "/dlq" if dead_only else "/jobs"
        first = {name: value for name, value in params.items() if name != "before"}
        listing = {**params, **({"state": "dead"} if dead_only else {})}
        return page(
            "jobs.html",
            request,
            dlq=dead_only,
            params=params,
            jobs=listed.to_json(),
            status=status.to_json(),
            next_page=api.next_page(path, params, listed.jobs, limit),
            first_page=f"{path}?{urlencode(first)}",
            scope="".join(f"&{urlencode({n: params[n]})}" for n in api.FILTERS if n in params),
            api_url=f"/api/jobs?{urlencode(listing)}",
        )

    async def dlq_page(request: Request) -> Response:
        return await job_list(request, dead_only=True)

    async def job_page(request: Request) -> Response:
        api.query(request, ())
        job_id = request.path_params["job_id"]
        detail: JobDetail = await run(["show", "--json", "--", job_id])
        shown = detail.to_json()
        return page(
            "job.html",
            request,
            job=shown,
            attempts=[attempt_view(a) for a in reversed(shown["history"])],
        )

    async def events(request: Request) -> Response:
        return live.snapshot_events(ticker, request)

    tails = live.Tails(queue, interval)

    async def tail(request: Request) -> Response:
        return await tails.events(request.path_params["job_id"])

    async def chart(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("throughput", "runtimes"):
            raise ApiError(404, f"no chart {name!r}.")
        frame = await run_in_threadpool(ticker.current)
        if name == "throughput":
            # (the hour from a whole minute on, and the current minute)
            svg = charts.throughput(frame.history, int(live.HISTORY_SPAN / live.HISTORY_BUCKET) + 1)
        else:
            svg = charts.runtimes(frame.history, live.RUNTIME_BOUNDS)
        return Response(svg, media_type="image/svg+xml")

    async def act_from_form(request: Request) -> Response:
        """An action of a page's form without script: done, then back to the page."""
        form = await api.guard_action(request, guard)
        await run(api.action_args(request))
        return RedirectResponse(local_path(str(form.get("next", "/"))), 303)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ticker.start()
        try:
            yield
        finally:
            # (in a thread: a reading under way may take a while, the loop goes on)
            await anyio.to_thread.run_sync(ticker.stop)

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            status, message = exc.status, exc.message
        elif isinstance(exc, QueuectlError):  # the queue could not be read, no such job, ...
            status, message = api.status_of(exc), redact(exc.message)
        else:
            status, message = 403, str(exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status)
        response = page("error.html", request, status=status, message=message)
        response.status_code = status
        return response

    form_actions = [
        Route(f"/actions{path}", act_from_form, methods=["POST"])
        for path in ("/jobs/{job_id}/retry", "/jobs/{job_id}/cancel", "/pause", "/resume")
    ]
    routes = [
        Route("/", overview),
        Route("/jobs", job_list),
        Route("/dlq", dlq_page),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/tail", tail),
        Route("/events", events),
        Route("/charts/{name:str}.svg", chart),
        Route("/metrics", metrics.endpoint(ticker)),  # type: ignore[arg-type]
        *api.routes(commands, guard),
        *form_actions,
        Mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, guard=guard)],
        lifespan=lifespan,
        exception_handlers={ApiError: refused, Forbidden: refused, QueuectlError: refused},
    )
    app.state.ticker = ticker
    app.state.guard = guard
    return app
