"""The dashboard's live parts in process: the charts and /metrics follow attempts as a pool
finishes them, a job's page shows its parents and children, and the header shows where the
queue is without this machine's folders."""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl.api import Queue
from queuectl.errors import QueuectlError
from queuectl.web import live
from queuectl.web.views import tail
from tests.conftest import wait_for
from tests.web.conftest import Client

pytestmark = pytest.mark.timeout(60)


def finished_last_hour(client: Client, outcome: str = "completed") -> float:
    metrics = text_string_to_metric_families(client.get("/metrics").text)  # type: ignore[attr-defined]
    family = next(f for f in metrics if f.name == "queuectl_attempts_last_hour")
    return next(s.value for s in family.samples if s.labels["outcome"] == outcome)


def test_the_charts_follow_attempts_as_soon_as_a_pool_finishes_them(
    sqlite_queue: Queue, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history is read on the first tick, then when the snapshot shows that attempts
    finished: not after a number of ticks (here never: only a change can bring it)."""
    monkeypatch.setattr(live, "HISTORY_TICKS", 1_000_000)
    queue = sqlite_queue
    client = make_client(queue)
    ticker = client.app.state.ticker  # type: ignore[attr-defined]
    first = client.get("/charts/throughput.svg").text
    assert "no attempt finished in the last hour" in first  # read at once, not "reading…"
    reads = ticker.history_reads
    assert reads >= 1
    queue.enqueue_many([{"command": "true", "id": f"j{n}"} for n in range(3)])
    queue.start_workers(2)
    assert queue.wait(timeout=30, progress=False)
    queue.stop_workers(wait=True)
    wait_for(lambda: finished_last_hour(client) == 3, timeout=10, what="3 in /metrics")
    throughput = client.get("/charts/throughput.svg").text
    bars = re.findall(r'fill="#2da44e"><title>(\d+)</title>', throughput)
    assert sum(map(int, bars)) == 3 and "no attempt finished" not in throughput
    assert "3 runs" in client.get("/charts/runtimes.svg").text
    assert ticker.history_reads > reads  # read again because attempts finished
    # the overview's charts are those of the latest reading; it says what they cover
    page = client.get("/").text
    assert f"/charts/runtimes.svg?v={ticker.frame.history_version}" in page
    assert "among the newest 10,000" in page and "of runs started in the last 24 hours" in page
    # each reading waits 20 times what the last one took: 5% of a core at most
    assert ticker.history_took < 0.5


def test_a_history_that_cannot_be_read_is_said_not_drawn_as_an_empty_chart(
    sqlite_queue: Queue, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*args: object, **kwargs: object) -> None:
        raise QueuectlError("the queue is locked.")

    monkeypatch.setattr(sqlite_queue.store, "attempt_history", locked)
    client = make_client(sqlite_queue)
    started = time.monotonic()
    page = client.get("/").text
    assert time.monotonic() - started < live.HISTORY_FIRST_WAIT  # no page waits for it
    assert re.search(r'<p class="banner banner-error" id="error">the queue is locked.</p>', page)
    chart = client.get("/charts/throughput.svg").text
    assert "reading the attempt history" in chart and "no attempt finished" not in chart
    ticker = client.app.state.ticker  # type: ignore[attr-defined]
    assert '"error": "the queue is locked."' in ticker.frame.data  # the live pages say it too


def test_a_jobs_page_shows_its_parents_and_children_with_their_states(
    sqlite_queue: Queue, make_client: Client
) -> None:
    queue = sqlite_queue
    queue.enqueue("true", id="fetch")
    queue.enqueue("true", id="clean")
    queue.enqueue("true", id="report", after=["fetch", "clean"])
    queue.enqueue("true", id="mail", after=["report"], after_rule="any")
    queue.enqueue("true", id="alone")
    client = make_client(queue)
    csrf = {"x-csrf-token": client.get("/api/csrf").json()["csrf_token"]}
    page = client.get("/jobs/report").text
    assert re.search(
        r'<a class="id" href="/jobs/fetch">fetch</a> <span class="state state-pending">', page
    )
    assert re.search(
        r'<a class="id" href="/jobs/mail">mail</a> <span class="state state-blocked">', page
    )
    assert "waiting for 2 parents" in page and "runs once each one completed" in page
    assert "waiting for 1 parent<" in client.get("/jobs/mail").text
    assert "runs once each one finished" in client.get("/jobs/mail").text
    clean = client.get("/jobs/clean").text  # no parents, one child
    assert '<li class="muted">none</li>' in clean and 'href="/jobs/report"' in clean
    assert 'id="relatives" data-shown="50" hidden' in client.get("/jobs/alone").text
    # the state filter offers blocked, and the listing has it
    assert '<option value="blocked">blocked</option>' in client.get("/jobs").text
    blocked = client.get("/api/jobs?state=blocked").json()
    assert [job["id"] for job in blocked] == ["mail", "report"]
    # a blocked job can be cancelled
    assert client.post("/api/jobs/mail/cancel", headers=csrf).json() == {"mail": "cancelled"}
    # a dead parent cancels its child; retrying the child is refused with the reason
    queue.move_to_dlq("fetch")
    shown = client.get("/api/jobs/report").json()
    assert (shown["state"], shown["cancelled_by"]) == ("cancelled", "fetch")
    assert shown["parents"] == [
        {"id": "fetch", "state": "dead"},
        {"id": "clean", "state": "pending"},
    ]
    assert "parent fetch is dead" in client.get("/jobs/report").text
    refused = client.post("/api/jobs/report/retry", headers=csrf)
    assert refused.status_code == 409
    assert "cannot run: parent fetch is dead" in refused.json()["error"]
    # without script, the form's answer is a page that says it
    form = {"csrf_token": csrf["x-csrf-token"], "next": "/jobs/report"}
    answer = client.post("/actions/jobs/report/retry", data=form)
    assert answer.status_code == 409 and "cannot run: parent fetch is dead" in answer.text
    assert queue.get("report").state.value == "cancelled"


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("/home/me/queue.db", "/home/me/queue.db"),
        (
            "/tmp/pytest-of-root/pytest-450/test_the_page_follows_a_dr0/demo/queue.db",
            "…/demo/queue.db",  # from a whole folder name
        ),
        ("/srv/" + "x" * 60 + ".db", "…" + "x" * 36 + ".db"),
        (  # a URL keeps its host: the "/" before the database name would leave too little
            "postgresql://me@a-long-host-name.example.com:5432/queue",
            "…a-long-host-name.example.com:5432/queue",
        ),
    ],
)
def test_a_long_location_is_shown_by_its_end(location: str, shown: str) -> None:
    assert tail(location) == shown
    assert len(shown) <= 40


def test_the_header_shows_the_end_of_the_location_and_all_of_it_on_hover(
    sqlite_queue: Queue, make_client: Client
) -> None:
    page = make_client(sqlite_queue).get("/jobs").text
    found = re.search(r'<span class="queue" id="location" title="([^"]*)">([^<]*)</span>', page)
    assert found is not None
    assert found.group(1) == sqlite_queue.location
    assert found.group(2) == tail(sqlite_queue.location) and found.group(2).endswith("queue.db")
