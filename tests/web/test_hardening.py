"""The dashboard under hostile or unlucky conditions, in process: other sites' cookies and
links, huge or cross-site posts, proxies, odd tokens and parameters, readings that fail or
grow old, and many open streams."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message

from queuectl.api import Queue
from queuectl.cli import main
from queuectl.errors import InvalidInput, QueuectlError
from queuectl.web import live
from queuectl.web.api import ApiError
from queuectl.web.app import create_app
from queuectl.web.security import MAX_FORM
from tests.conftest import wait_for
from tests.web.conftest import Client

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token-0123456789"


def call(
    app: ASGIApp,
    method: str,
    raw_path: bytes,
    headers: dict[str, str],
    query: bytes = b"",
    chunks: Iterator[bytes] = iter(()),
) -> tuple[int, dict[str, str], int]:
    """A request straight to the ASGI app, as a server would pass it: its status, headers,
    and how many times the app asked for the body."""
    asked = 0
    started: dict[str, Any] = {}

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        chunk = next(chunks, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode(),  # (these carry nothing to decode)
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3030),
    }
    anyio.run(app, scope, receive, send)
    answered = {k.decode(): v.decode() for k, v in started["headers"]}
    return started["status"], answered, asked


def endless(size: int = 16384, most: int = 2 << 20) -> Iterator[bytes]:
    """A form's body chunk by chunk: ``csrf_token=xxxx...`` (up to ``most`` bytes)."""
    yield b"csrf_token="
    for _ in range(most // size):
        yield b"x" * size


# -- S1, S4, S5, S6: the token -------------------------------------------------------------


def test_the_token_cookie_is_found_among_cookies_the_stdlib_rejects(
    sqlite_queue: Queue, make_client: Client
) -> None:
    client = make_client(sqlite_queue, token=TOKEN, host="0.0.0.0", port=3999)
    cookie = f'ui={{"theme":"dark"}}; queuectl_dashboard_3999={TOKEN}'
    assert client.get("/api/status", headers={"cookie": cookie}).status_code == 200
    wrong = 'ui={"theme":"dark"}; queuectl_dashboard_3999=wrong'
    assert client.get("/api/status", headers={"cookie": wrong}).status_code == 401


def test_the_token_link_keeps_the_browser_on_this_server_in_a_lax_cookie(
    sqlite_queue: Queue, make_client: Client
) -> None:
    app = make_client(sqlite_queue, token=TOKEN, host="0.0.0.0", port=3999).app
    host = {"host": "dash.example:3999"}
    for raw, location in [
        (b"//evil.example/", "/evil.example/"),
        (b"///evil.example/x", "/evil.example/x"),
        (b"/\\evil.example/", "/evil.example/"),
        (b"/jobs/a%2Fb", "/jobs/a%2Fb"),  # as it was sent
    ]:
        status, headers, _ = call(app, "GET", raw, host, query=f"token={TOKEN}".encode())
        assert (status, headers["location"]) == (303, location), raw
        assert "SameSite=Lax" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]


def test_a_token_that_is_not_url_safe_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sqlite_queue: Queue
) -> None:
    for token in ("a+b&c=d e-and-more-of-it", "short-token"):
        assert main(["--db", str(tmp_path / "q.db"), "dashboard", "--token", token]) == 2
        err = capsys.readouterr().err
        assert "at least 16 characters among letters, digits and - . _ ~" in err, err
    with pytest.raises(InvalidInput):
        create_app(sqlite_queue, token="a+b&c=d e-and-more-of-it")


# -- S2, S3: actions ------------------------------------------------------------------------


def test_a_post_is_refused_before_its_body_is_read_and_a_big_one_is_not_read(
    sqlite_queue: Queue, make_client: Client
) -> None:
    app = make_client(sqlite_queue).app
    form = {"host": "127.0.0.1", "content-type": "application/x-www-form-urlencoded"}
    huge = {**form, "content-length": str(300 << 20)}
    # another site: refused on its headers alone, not one byte read
    for refused in ({"sec-fetch-site": "cross-site"}, {"origin": "http://evil.example"}):
        status, _, asked = call(
            app, "POST", b"/actions/pause", {**huge, **refused}, chunks=endless()
        )
        assert (status, asked) == (403, 0), refused
    # a Content-Length beyond the limit: 413 at once; without one, read up to the limit only
    assert call(app, "POST", b"/actions/pause", huge, chunks=endless())[::2] == (413, 0)
    status, _, asked = call(app, "POST", b"/api/pause", form, chunks=endless())
    assert status == 413 and asked <= MAX_FORM // 16384 + 2
    assert not sqlite_queue.paused


def test_behind_a_tls_proxy_the_origin_host_is_what_counts(
    sqlite_queue: Queue, make_client: Client
) -> None:
    client = make_client(sqlite_queue)
    csrf = client.get("/api/csrf").json()["csrf_token"]

    def pause(origin: str) -> int:
        headers = {"x-csrf-token": csrf, "origin": origin, "host": "127.0.0.1:3030"}
        return int(client.post("/api/pause", headers=headers).status_code)

    assert pause("https://127.0.0.1:3030") == 200  # the page is https, the server hears http
    for other in ("http://127.0.0.1:9999", "https://evil.example", "null", "http://127.0.0.1"):
        assert pause(other) == 403, other


# -- A1, C1, C2: parameters and links ------------------------------------------------------


def test_a_limit_is_ascii_digits_and_a_page_shows_a_thousand_at_most(
    sqlite_queue: Queue, make_client: Client
) -> None:
    client = make_client(sqlite_queue)
    for limit in ("%C2%B2", "%EF%BC%95", "-1", "1e3"):  # ², a fullwidth 5
        answer = client.get(f"/api/jobs?limit={limit}")
        assert answer.status_code == 400 and "limit must be" in answer.json()["error"], limit
        assert client.get(f"/jobs?limit={limit}").status_code == 400
    assert client.get("/api/jobs?limit=5000").status_code == 200  # the CLI's range
    assert client.get("/jobs?limit=1000").status_code == 200
    page = client.get("/jobs?limit=1001")
    assert page.status_code == 400 and "from 1 to 1000" in page.text


def test_the_dlq_takes_no_state_and_scoped_counts_keep_their_scope(
    sqlite_queue: Queue, make_client: Client
) -> None:
    sqlite_queue.enqueue("true", id="a", group="g+1", tags=["t"])
    client = make_client(sqlite_queue)
    refused = client.get("/dlq?state=pending")
    assert refused.status_code == 400 and "unknown parameter &#39;state&#39;" in refused.text
    assert (
        'href="/jobs?state=pending&amp;group=g%2B1&amp;tag=t"'
        in client.get("/jobs?group=g%2B1&tag=t").text
    )
    assert 'href="/jobs?state=pending"' in client.get("/").text


# -- T1, T2, T5: readings that fail or grow old ---------------------------------------------


def test_an_unexpected_error_is_shown_logged_once_and_the_ticker_goes_on(
    sqlite_queue: Queue,
    make_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = make_client(sqlite_queue)
    ticker = client.app.state.ticker  # type: ignore[attr-defined]
    client.get("/api/status")
    wait_for(lambda: ticker.frame is not None and ticker.frame.history is not None)
    snapshot, history = sqlite_queue.snapshot, sqlite_queue.store.attempt_history

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sqlite_queue, "snapshot", boom)
    monkeypatch.setattr(sqlite_queue.store, "attempt_history", boom)
    reads = ticker.reads
    wait_for(lambda: ticker.error is not None, timeout=5)
    assert ticker.error == "the queue could not be read: RuntimeError: boom"
    assert "RuntimeError: boom" in ticker.frame.data  # the pages' banner says it
    ticker.demand()
    time.sleep(0.5)  # a few failed ticks
    monkeypatch.setattr(sqlite_queue, "snapshot", snapshot)
    wait_for(lambda: ticker.reads > reads and ticker.error is None, timeout=5, what="recovery")
    # the history thread lives on too: it fails, says so, then reads again
    sqlite_queue.enqueue("true", id="a")  # (a change: the history is asked for)
    wait_for(lambda: ticker.history_error is not None, timeout=5, what="history error")
    monkeypatch.setattr(sqlite_queue.store, "attempt_history", history)
    sqlite_queue.enqueue("true", id="b")
    wait_for(lambda: ticker.history_error is None, timeout=10, what="history again")
    assert all(t.is_alive() for t in (ticker._thread, ticker._history_thread))
    logged = [r for r in caplog.records if "RuntimeError: boom" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert capsys.readouterr().out == ""


def test_an_old_reading_is_read_again_and_metrics_say_when_and_whether_it_failed(
    sqlite_queue: Queue, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "IDLE_AFTER", 0.3)
    client = make_client(sqlite_queue)
    ticker = client.app.state.ticker  # type: ignore[attr-defined]
    assert client.get("/metrics").status_code == 200
    time.sleep(0.6)
    reads = ticker.reads
    time.sleep(0.4)
    assert ticker.reads == reads  # asleep: nobody looks
    sqlite_queue.enqueue("true", id="a")
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    jobs = {s.labels["state"]: s.value for s in families["queuectl_jobs"].samples}
    assert jobs["pending"] == 1  # not the reading of a second ago
    read_at = families["queuectl_last_read_timestamp_seconds"].samples[0].value
    assert abs(read_at - time.time()) < 2
    # while the queue cannot be read: 503 and why, not the last numbers
    monkeypatch.setattr(sqlite_queue, "snapshot", locked)
    wait_for(lambda: ticker.error is not None, timeout=5)
    answer = client.get("/metrics")
    assert answer.status_code == 503 and "the queue is locked." in answer.text


def locked(*args: object, **kwargs: object) -> None:
    raise QueuectlError("the queue is locked.")


def test_a_first_reading_that_fails_and_an_unknown_tail_are_clear_answers(
    sqlite_queue: Queue, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_queue, "snapshot", locked)
    client = make_client(sqlite_queue)
    for path in ("/", "/metrics", "/charts/throughput.svg"):
        answer = client.get(path)
        assert answer.status_code == 503 and "the queue is locked." in answer.text, path
        assert "Traceback" not in answer.text
    tail = client.get("/jobs/nope/tail")
    assert tail.status_code == 404 and "no job with id &#39;nope&#39;" in tail.text


# -- T4: streams of running output ----------------------------------------------------------


def test_tails_have_their_own_slots_and_hold_no_thread_between_reads(
    sqlite_queue: Queue,
) -> None:
    sqlite_queue.enqueue("true", id="a")  # pending: its output is waited for

    async def main() -> tuple[int, list[int]]:
        tails = live.Tails(sqlite_queue, 0.05)
        responses = [await tails.events("a") for _ in range(live.TAILS)]
        with pytest.raises(ApiError) as refused:
            await tails.events("a")
        assert refused.value.status == 503
        threads = anyio.to_thread.current_default_thread_limiter()
        borrowed: list[int] = []

        async def drain() -> None:
            async for _ in responses[0].body_iterator:
                pass

        async with anyio.create_task_group() as group:
            group.start_soon(drain)
            for _ in range(10):
                await anyio.sleep(0.03)
                borrowed.append(threads.borrowed_tokens)
            group.cancel_scope.cancel()
        return tails.open.borrowed_tokens, borrowed

    still_open, borrowed = anyio.run(main)
    assert still_open == live.TAILS - 1  # the drained one gave its slot back
    assert borrowed.count(0) >= 5, borrowed
    assert threading.active_count() < 50
