"""The dashboard's JSON API answers exactly what ``queuectl ... --json`` prints, pages through a
queue by cursor, and refuses bad requests with a clear JSON message."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl.api import Queue
from queuectl.model import State
from tests.conftest import wait_for
from tests.web.conftest import Client, cli_json


def drained(queue: Queue) -> None:
    """Three completed jobs and a dead one, run by a pool of this process."""
    queue.enqueue("echo one", id="one", group="g", tags=["t"])
    queue.enqueue("echo two", id="two", group="g")
    queue.enqueue("printf 'bad\\n' >&2; exit 3", id="bad", max_retries=0, tags=["t"])
    queue.enqueue("echo TRAIN lr", id="train-1")
    queue.start_workers(2)
    assert queue.wait(timeout=30, progress=False)
    queue.stop_workers(wait=True)


def test_status_and_a_job_are_what_the_cli_prints(
    queue: Queue, make_client: Client, tmp_path: Path
) -> None:
    drained(queue)
    client = make_client(queue)
    home = tmp_path / "home"
    assert client.get("/api/status").json() == cli_json(queue.db, "status", home=home)
    assert client.get("/api/jobs/bad").json() == cli_json(queue.db, "show", "bad", home=home)


def test_listings_dlq_and_metrics_are_what_the_cli_prints(
    sqlite_queue: Queue, make_client: Client, tmp_path: Path
) -> None:
    queue, home = sqlite_queue, tmp_path / "home"
    drained(queue)
    client = make_client(queue)
    cases = [
        ("/api/jobs", ["list", "--limit", "50"]),
        ("/api/jobs?state=dead", ["list", "--state", "dead", "--limit", "50"]),
        ("/api/jobs?group=g&limit=1", ["list", "--group", "g", "--limit", "1"]),
        ("/api/jobs?tag=t&before=bad", ["list", "--tag", "t", "--before", "bad", "--limit", "50"]),
        ("/api/jobs?q=train", ["list", "--search", "train", "--limit", "50"]),
        ("/api/status?group=g", ["status", "--group", "g"]),
        ("/api/dlq", ["dlq", "list", "--limit", "50"]),
        ("/api/metrics", ["metrics"]),
    ]
    for path, args in cases:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == cli_json(queue.db, *args, home=home), path


def test_pages_of_jobs_follow_the_link_header_to_the_end(
    sqlite_queue: Queue, make_client: Client
) -> None:
    sqlite_queue.enqueue_many([{"command": "true", "id": f"j{n:03}"} for n in range(25)])
    client = make_client(sqlite_queue)
    seen, url = [], "/api/jobs?limit=10"
    while url:
        answer = client.get(url)
        seen += [job["id"] for job in answer.json()]
        link = answer.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
    assert seen == [f"j{n:03}" for n in reversed(range(25))]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/jobs?state=done", "state must be one of"),
        ("/api/jobs?limit=0", "limit must be a whole number"),
        ("/api/jobs?limit=ten", "limit must be a whole number"),
        ("/api/jobs?colour=red", "unknown parameter 'colour'"),
        ("/api/jobs?state=dead&state=failed", "given twice"),
        ("/api/jobs?before=nope", "no job with id 'nope'"),
        ("/api/jobs/nope", "no job with id 'nope'"),
        ("/api/status?verbose=1", "unknown parameter"),
    ],
)
def test_bad_requests_get_a_clear_json_message(
    sqlite_queue: Queue, make_client: Client, path: str, message: str
) -> None:
    answer = make_client(sqlite_queue).get(path)
    assert answer.status_code in (400, 404)
    assert answer.status_code == (404 if "nope" in path else 400)
    assert message in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_actions_need_the_csrf_token_and_the_same_origin(
    sqlite_queue: Queue, make_client: Client
) -> None:
    queue = sqlite_queue
    queue.enqueue("true", id="a")
    queue.move_to_dlq("a")
    client = make_client(queue)
    csrf = client.get("/api/csrf").json()["csrf_token"]
    assert client.post("/api/jobs/a/retry").status_code == 403
    assert client.post("/api/jobs/a/retry", headers={"x-csrf-token": "wrong"}).status_code == 403
    cross = {"x-csrf-token": csrf, "sec-fetch-site": "cross-site"}
    assert client.post("/api/jobs/a/retry", headers=cross).status_code == 403
    other = {"x-csrf-token": csrf, "origin": "http://evil.example"}
    assert client.post("/api/jobs/a/retry", headers=other).status_code == 403
    assert queue.get("a").state is State.DEAD  # nothing changed
    ok = client.post(
        "/api/jobs/a/retry", headers={"x-csrf-token": csrf, "origin": "http://127.0.0.1"}
    )
    assert ok.json() == {"retried": ["a"]}
    assert client.post("/api/jobs/a/cancel", headers={"x-csrf-token": csrf}).json() == {
        "a": "cancelled"
    }
    assert client.post("/api/jobs/a/cancel", headers={"x-csrf-token": csrf}).status_code == 409
    assert client.post("/api/pause", headers={"x-csrf-token": csrf}).json()["paused"] is True
    assert queue.paused
    # a page's form without script: done, then back to the page (never to another site)
    form = {"csrf_token": csrf, "next": "//evil.example/"}
    answer = client.post("/actions/resume", data=form, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    assert not queue.paused


def test_read_only_has_no_buttons_and_refuses_every_action(
    sqlite_queue: Queue, make_client: Client
) -> None:
    sqlite_queue.enqueue("true", id="a")
    client = make_client(sqlite_queue, read_only=True)
    csrf = client.get("/api/csrf").json()["csrf_token"]
    for page in ("/", "/jobs", "/jobs/a", "/dlq"):
        html = client.get(page).text
        assert 'class="action"' not in html and "/actions/" not in html, page
    for path in ("/api/jobs/a/cancel", "/api/pause", "/actions/pause"):
        answer = client.post(path, headers={"x-csrf-token": csrf})
        assert answer.status_code == 403, path
    assert sqlite_queue.get("a").state is State.PENDING and not sqlite_queue.paused


def test_a_token_is_asked_for_then_kept_in_a_lax_cookie(
    sqlite_queue: Queue, make_client: Client
) -> None:
    client = make_client(sqlite_queue, token="s3cret-token-0123456789", host="0.0.0.0", port=3999)
    for path in ("/", "/api/status", "/events", "/metrics", "/static/dashboard.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/?token=wrong").status_code == 401
    assert client.get(
        "/api/status", headers={"authorization": "Bearer s3cret-token-0123456789"}
    ).is_success
    welcome = client.get("/jobs?state=dead&token=s3cret-token-0123456789", follow_redirects=False)
    assert (welcome.status_code, welcome.headers["location"]) == (303, "/jobs?state=dead")
    cookie = welcome.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert cookie.startswith("queuectl_dashboard_3999=s3cret-token-0123456789;")
    assert client.get("/api/status").is_success  # the cookie now


def test_a_loopback_dashboard_answers_only_to_loopback_names(
    sqlite_queue: Queue, make_client: Client
) -> None:
    client = make_client(sqlite_queue)
    assert client.get("/api/status", headers={"host": "localhost:3030"}).is_success
    assert client.get("/api/status", headers={"host": "[::1]:3030"}).is_success
    assert client.get("/api/status", headers={"host": "rebound.example:3030"}).status_code == 403


def test_pages_escape_what_jobs_hold_and_set_a_strict_csp(
    sqlite_queue: Queue, make_client: Client
) -> None:
    probe = "<script>alert(1)</script> <img src=x onerror=alert(1)> \x1b[31mred"
    sqlite_queue.enqueue(f"echo '{probe}'", id="xss", group="g")
    client = make_client(sqlite_queue)
    for page in ("/", "/jobs", "/jobs?q=script", "/jobs/xss"):
        answer = client.get(page)
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert "<script>alert" not in answer.text and "<img src=x" not in answer.text
        assert "\x1b" not in answer.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text, page
        assert "\\x1b[31mred" in answer.text, page


def test_prometheus_metrics_from_the_shared_reading(
    sqlite_queue: Queue, make_client: Client
) -> None:
    drained(sqlite_queue)
    client = make_client(sqlite_queue)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    jobs = {s.labels["state"]: s.value for s in families["queuectl_jobs"].samples}
    assert (jobs["completed"], jobs["dead"], jobs["pending"]) == (3, 1, 0)
    finished = families["queuectl_attempts_last_hour"]
    assert finished.type == "gauge"  # of the last hour: not a counter
    attempts = {s.labels["outcome"]: s.value for s in finished.samples}
    assert (attempts["completed"], attempts["failed"], attempts["lost"]) == (3, 1, 0)
    runtime = {
        s.labels["quantile"]: s.value for s in families["queuectl_attempt_runtime_seconds"].samples
    }
    assert set(runtime) == {"0.5", "0.95"} and 0 < runtime["0.5"] <= runtime["0.95"] <= 5
    assert families["queuectl_attempt_runtime_sampled"].samples[0].value == 3
    buckets = {
        s.labels["le"]: s.value
        for s in families["queuectl_recent_attempt_runtime_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["+Inf"] == 3 and list(buckets.values()) == sorted(buckets.values())
    assert families["queuectl_workers"].samples[0].value == 0


def test_the_event_stream_sends_one_shared_reading(
    sqlite_queue: Queue, make_client: Client
) -> None:
    sqlite_queue.enqueue("true", id="a")
    client = make_client(sqlite_queue)
    ticker = client.app.state.ticker  # type: ignore[attr-defined]
    wait_for(lambda: ticker.frame is not None)
    frame = ticker.frame
    assert '"pending": 1' in frame.data and frame.snapshot.status.counts[State.PENDING] == 1
    assert client.get("/charts/throughput.svg").headers["content-type"] == "image/svg+xml"
    assert client.get("/charts/nope.svg").status_code == 404
