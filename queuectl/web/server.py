"""Running the dashboard: the listening socket, the URL to open, uvicorn until Ctrl-C."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import webbrowser
from dataclasses import dataclass

import uvicorn

from queuectl.api import Queue
from queuectl.errors import InvalidInput, QueuectlError
from queuectl.web.app import create_app
from queuectl.web.security import is_loopback


@dataclass(frozen=True)
class Settings:
    """The options of ``queuectl dashboard``."""

    host: str
    port: int
    open_browser: bool = False
    read_only: bool = False
    token: str | None = None
    interval: float = 1.0


def serve(queue: Queue, settings: Settings) -> None:
    """Serve the dashboard of ``queue`` until interrupted (SIGINT, SIGTERM)."""
    token = settings.token
    if token is None and not is_loopback(settings.host):
        token = secrets.token_urlsafe(24)  # another host may reach it: never without a token
    listener = _listen(settings.host, settings.port)
    port = listener.getsockname()[1]
    app = create_app(queue, settings.interval, settings.read_only, token, settings.host, port)
    urls = [_url(host, port, token) for host in _hosts(settings.host)]
    print(f"queuectl dashboard of {queue.location}", flush=True)
    for url in urls:
        print(f"    {url}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    if settings.open_browser:
        threading.Timer(0.5, webbrowser.open, [urls[0]]).start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        # Proxies' X-Forwarded-* headers are not trusted: the Host check relies on the real one.
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise InvalidInput(f"--host {host!r} is not an address of this machine: {exc}.") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        hint = " (choose another with --port)" if port else ""
        raise QueuectlError(f"cannot listen on {host} port {port}: {exc.strerror}{hint}.") from None
    listener.listen(128)  # from now on a browser's connection waits for the server
    return listener


def _hosts(host: str) -> list[str]:
    """The names to print for ``host``: every address, then this machine's name and 127.0.0.1."""
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return [socket.gethostname(), "127.0.0.1"]
    except ValueError:
        pass
    return [host]


def _url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
