"""The JSON API under ``/api/``: the CLI's own commands, run on the server's queue.

Each endpoint turns its validated query into the arguments of a ``queuectl`` command and runs
the click group (as the notebook magic does) with a ``Session`` that hands out the server's
long-lived queue; the answer is that command's ``Result.to_json()``, exactly what ``queuectl
... --json`` prints. Bad parameters answer 400, an unknown job 404, a job in the wrong state
409, each as ``{"error": message}``; never a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import click
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from queuectl.api import Queue
from queuectl.commands import Result, Session, cli
from queuectl.errors import InvalidInput, InvalidTransition, NotFound, QueuectlError
from queuectl.model import State
from queuectl.model.parse import MAX_LIMIT
from queuectl.store import redact
from queuectl.web.security import MAX_FORM, Forbidden, Guard

#: the rows of a page of jobs, unless ``limit`` says otherwise
PAGE = 50
#: the most rows an HTML page shows (the API accepts what ``queuectl list`` does)
PAGE_MAX = 1000
#: what each listing accepts, besides paging
FILTERS = ("group", "tag")
LIST_PARAMS = ("state", *FILTERS, "q", "limit", "before")


class ApiError(Exception):
    """An answer other than 200: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Commands:
    """Runs ``queuectl`` commands on one open queue, from any thread."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def run(self, args: Sequence[str]) -> Result:
        """The result of ``queuectl ARGS --json`` (``ApiError`` for what it refuses)."""
        session = Session(as_json=True, opener=lambda db: self.queue)
        try:
            with cli.make_context("queuectl", [*args], obj=session) as ctx:
                result = cli.invoke(ctx)
        except click.ClickException as exc:
            raise ApiError(400, exc.format_message()) from None
        except click.exceptions.Exit:
            raise ApiError(400, "no such request.") from None
        except QueuectlError as exc:
            raise ApiError(status_of(exc), redact(exc.message)) from None
        if not isinstance(result, Result):
            raise ApiError(500, "the command returned nothing.")
        return result


def status_of(exc: QueuectlError) -> int:
    """The HTTP status of a refused request."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidTransition):
        return 409
    if isinstance(exc, InvalidInput):
        return 400
    return 503  # the store cannot be used now


def query(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters, each given at most once and among ``allowed`` (``token`` aside),
    empty ones left out."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name == "token":
            continue
        if name not in allowed:
            shown = ", ".join(allowed) or "none"
            raise ApiError(400, f"unknown parameter {name!r} (accepted: {shown}).")
        if name in found:
            raise ApiError(400, f"parameter {name!r} is given twice.")
        if value.strip():
            found[name] = value.strip()
    return found


def list_args(
    params: Mapping[str, str], dead_only: bool = False, most: int = MAX_LIMIT
) -> list[str]:
    """The arguments of ``queuectl list`` for a listing's parameters, checked."""
    args = ["list", "--json", f"--limit={limit_of(params, most)}"]
    state = params.get("state", "dead" if dead_only else None)
    if state is not None:
        if state not in {s.value for s in State}:
            choices = ", ".join(s.value for s in State)
            raise ApiError(400, f"state must be one of {choices}; got {state!r}.")
        args.append(f"--state={state}")
    for name in FILTERS:
        if name in params:
            args.append(f"--{name}={params[name]}")
    if "q" in params:
        args.append(f"--search={params['q']}")
    if "before" in params:
        args.append(f"--before={params['before']}")
    return args


def limit_of(params: Mapping[str, str], most: int = MAX_LIMIT) -> int:
    """The page size a listing asks for (``limit``, ASCII digits only), checked."""
    value = params.get("limit")
    if value is None:
        return PAGE
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= most:
        raise ApiError(400, f"limit must be a whole number from 1 to {most}; got {value!r}.")
    return int(value)


def filter_args(params: Mapping[str, str]) -> list[str]:
    return [f"--{name}={params[name]}" for name in FILTERS if name in params]


def next_page(path: str, params: Mapping[str, str], jobs: Sequence[Any], limit: int) -> str | None:
    """The URL of the page after this one, if it may have jobs."""
    if len(jobs) < limit:
        return None
    return f"{path}?{urlencode({**params, 'before': jobs[-1].id})}"


def answer(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """JSON as ``--json`` prints it (lone surrogates of non-UTF-8 output stay escaped)."""
    body = json.dumps(data, indent=2).encode()
    return Response(body, status, headers, media_type="application/json")


def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """An API endpoint: its handler runs in a thread (the store blocks); errors as JSON."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except Forbidden as exc:
            return JSONResponse({"error": str(exc)}, 403)

    return run


def routes(commands: Commands, guard: Guard) -> list[Route]:
    """The ``/api/`` routes."""

    def call(args: Sequence[str]) -> Any:
        return run_in_threadpool(commands.run, args)

    async def status(request: Request) -> Response:
        params = query(request, FILTERS)
        return answer((await call(["status", "--json", *filter_args(params)])).to_json())

    async def jobs(request: Request) -> Response:
        params = query(request, LIST_PARAMS)
        result = await call(list_args(params))
        link = next_page("/api/jobs", params, result.jobs, limit_of(params))
        headers = {"link": f'<{link}>; rel="next"'} if link else {}
        return answer(result.to_json(), headers=headers)

    async def job(request: Request) -> Response:
        query(request, ())
        result = await call(["show", "--json", "--", request.path_params["job_id"]])
        return answer(result.to_json())

    async def dlq(request: Request) -> Response:
        params = query(request, (*FILTERS, "limit"))
        args = ["dlq", "list", "--json", f"--limit={limit_of(params)}"]
        return answer((await call([*args, *filter_args(params)])).to_json())

    async def metrics(request: Request) -> Response:
        params = query(request, FILTERS)
        return answer((await call(["metrics", "--json", *filter_args(params)])).to_json())

    async def csrf(request: Request) -> Response:
        return answer({"csrf_token": guard.csrf, "read_only": guard.read_only})

    async def act(request: Request) -> Response:
        query(request, ())
        await guard_action(request, guard)
        return answer((await call(action_args(request))).to_json())

    return [
        Route("/api/status", endpoint(status)),
        Route("/api/jobs", endpoint(jobs)),
        Route("/api/jobs/{job_id}/retry", endpoint(act), methods=["POST"]),
        Route("/api/jobs/{job_id}/cancel", endpoint(act), methods=["POST"]),
        Route("/api/jobs/{job_id}", endpoint(job)),
        Route("/api/dlq", endpoint(dlq)),
        Route("/api/metrics", endpoint(metrics)),
        Route("/api/csrf", endpoint(csrf)),
        Route("/api/pause", endpoint(act), methods=["POST"]),
        Route("/api/resume", endpoint(act), methods=["POST"]),
    ]


async def guard_action(request: Request, guard: Guard) -> dict[str, Any]:
    """Check that this POST may act (``Forbidden``); its form, if it sent one. Every check
    that needs no body comes first, and a form is read up to ``MAX_FORM`` bytes (413)."""
    guard.check_request(request)
    form: dict[str, Any] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # (parsed here: starlette's form parser needs python-multipart, not in the extra)
        data = await read_body(request, MAX_FORM)
        form = dict(parse_qsl(data.decode("utf-8", "replace")))
    guard.check_action(request, form)
    return form


async def read_body(request: Request, most: int) -> bytes:
    """The request's body, if it has at most ``most`` bytes (``ApiError`` 413 otherwise, as
    soon as its ``Content-Length`` or what came says so)."""
    too_big = ApiError(413, f"the request's body is too big (at most {most} bytes).")
    length = request.headers.get("content-length", "")
    if re.fullmatch(r"[0-9]+", length) and int(length) > most:
        raise too_big
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > most:
            raise too_big
    return bytes(data)


def action_args(request: Request) -> list[str]:
    """The command of an action's path: ``/api/jobs/ID/cancel``, ``/api/pause``, ..."""
    verb = request.url.path.rstrip("/").rsplit("/", 1)[1]
    if verb in ("pause", "resume"):
        return [verb, "--json"]
    job_id = request.path_params["job_id"]
    if verb == "cancel":  # the page follows the stop live; the request does not wait for it
        return ["cancel", "--json", "--no-wait", "--", job_id]
    return ["retry", "--json", "--", job_id]
