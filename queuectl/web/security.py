"""Who may use the dashboard, and how a page may act.

- A loopback server answers only requests whose ``Host`` is a loopback name: a web page of
  another site cannot reach it through a DNS name pointed at 127.0.0.1 (DNS rebinding).
- With a token (always on a non-loopback address), every request carries it: as
  ``Authorization: Bearer``, or in the HttpOnly, SameSite=Lax cookie that a first visit
  with ``?token=`` sets (then redirected to the URL without it: a path of this server only).
  Lax, not Strict: a tokened link followed from another site (a chat, a wiki) works; a GET
  changes nothing, and a POST needs more than the cookie. Otherwise: 401, nothing done.
- POST (the actions) needs the server's CSRF secret (the page's hidden field or the
  ``X-CSRF-Token`` header; a Bearer token stands for it) and, when the browser says where the
  request comes from (``Origin``, ``Sec-Fetch-Site``), this very site: the ``Origin``'s
  host[:port] must be the ``Host`` (its scheme is not compared: behind a TLS proxy the page is
  https and the server hears http). Every check that needs no body comes first; a form is
  read up to ``MAX_FORM`` bytes (413 beyond). Read-only: 403.
- Every answer forbids framing and sniffing, and its CSP runs only the dashboard's own script.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuectl.errors import InvalidInput

LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: the largest form an action reads (its CSRF token and the page to go back to)
MAX_FORM = 65536
#: what a token may be: URL-safe as it is (in ``?token=``, a cookie), and not too short
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,}")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # a URL may hold ?token=
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, maybe in brackets) is this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Forbidden(Exception):
    """A request that may not do what it asks (answered 403 with this message)."""


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot guard the dashboard (None: it can)."""
    if TOKEN_PATTERN.fullmatch(token):
        return None
    return (
        "the token must be at least 16 characters among letters, digits and - . _ ~ "
        "(it travels in URLs and a cookie as it is); for instance: "
        "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
    )


@dataclass(frozen=True)
class Guard:
    """The server's secrets and rules (see the module docstring)."""

    token: str | None
    loopback: bool
    port: int
    read_only: bool = False
    #: the per-server CSRF secret, in every page's form
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        problem = self.token and token_problem(self.token)
        if problem:
            raise InvalidInput(problem)

    @property
    def cookie(self) -> str:
        """The token cookie's name: one per port, as browsers share cookies across ports."""
        return f"queuectl_dashboard_{self.port}"

    def bearer(self, headers: Headers) -> bool:
        """Whether the request carries the token in ``Authorization: Bearer``."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return self.token is not None and scheme.lower() == "bearer" and _same(given, self.token)

    def authorized(self, headers: Headers) -> bool:
        if self.token is None or self.bearer(headers):
            return True
        # Starlette's lenient parser: other apps of this host may set cookies that the
        # standard library's parser stops at (``ui={"theme":"dark"}``).
        given = cookie_parser(headers.get("cookie", "")).get(self.cookie)
        return given is not None and _same(given, self.token)

    def check_request(self, request: Request) -> None:
        """Raise ``Forbidden`` unless this POST may act as far as its headers say
        (read-only, the site and origin it comes from): before its body is read."""
        if self.read_only:
            raise Forbidden("the dashboard is read-only.")
        headers = request.headers
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden(f"a request from another site ({site}) may not act.")
        origin = headers.get("origin")
        if origin is not None and not _same_host(origin, headers.get("host", "")):
            raise Forbidden("a request from another origin may not act.")

    def needs_form(self, request: Request) -> bool:
        """Whether the CSRF secret can only be in the form (no header, no Bearer token)."""
        return not (request.headers.get(CSRF_HEADER) or self.bearer(request.headers))

    def check_action(self, request: Request, form: dict[str, Any] | None = None) -> None:
        """Raise ``Forbidden`` unless this POST may act (read-only, origin, CSRF secret)."""
        self.check_request(request)
        headers = request.headers
        if self.bearer(headers):
            return
        given = headers.get(CSRF_HEADER) or str((form or {}).get(CSRF_FIELD, ""))
        if not _same(given, self.csrf):
            raise Forbidden("the CSRF token is missing or wrong: reload the page.")


def _same_host(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names the host[:port] of ``Host``. The
    scheme is left out: behind a TLS proxy the browser says https, the server hears http."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class GuardMiddleware:
    """Applies the ``Guard`` to every request, and adds the safety headers to every answer."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if self.guard.loopback and not is_loopback(_hostname(headers.get("host", ""))):
            await _refuse(send, 403, "this dashboard answers only to localhost names.", path)
            return
        if self.guard.token is not None and not self.guard.authorized(headers):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.pop("token", None)
            if given is not None and _same(given, self.guard.token) and scope["method"] == "GET":
                raw = scope.get("raw_path")
                await self._welcome(send, raw.decode("latin-1") if raw else quote(path), query)
            else:
                await _refuse(
                    send,
                    401,
                    "a token is required: open the URL printed by "
                    "`queuectl dashboard` (?token=...).",
                    path,
                )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _welcome(self, send: Send, path: str, query: dict[str, str]) -> None:
        """The token was in the URL: keep it in a cookie and show the URL without it."""
        cookie = (
            f"{self.guard.cookie}={self.guard.token}; Path=/; HttpOnly; SameSite=Lax"
        ).encode()
        location = _local(path) + (f"?{urlencode(query)}" if query else "")
        headers = [(b"location", location.encode()), (b"set-cookie", cookie), *HEADERS]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _local(raw_path: str) -> str:
    """A path of this server to send the browser to: the request's path as it was sent
    (still percent-encoded), its leading slashes (or backslashes) made one, so that
    ``//evil.example/`` stays here."""
    return "/" + raw_path.lstrip("/\\")


def _hostname(host: str) -> str:
    """The name of a ``Host`` header, without its port."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _refuse(send: Send, status: int, message: str, path: str) -> None:
    if path.startswith("/api/"):
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = f"{status}: {message}\n".encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *HEADERS]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
