"""``queuectl dashboard`` in a real browser: the real command serving a real queue that a real
pool drains. The page follows the queue live without reloading, its buttons act, read-only
mode has none, a non-loopback bind wants its token, and nothing a job holds runs as markup."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Locator, Page, expect

from queuectl.api import connect
from tests.browser.conftest import ConsoleErrors, Screenshot
from tests.conftest import QUEUECTL, Cli, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
#: what a job of the XSS probe prints and runs
PROBE = "<script>alert(1)</script> <img src=x onerror=alert(1)>"
LIVE_MS = 20_000


class Dashboard:
    """A ``queuectl dashboard`` process on a free port of its own choosing (``--port 0``)."""

    def __init__(self, cli: Cli, *options: str) -> None:
        command = [QUEUECTL, "dashboard", "--port", "0", "--interval", "0.3", *options]
        self.proc = subprocess.Popen(
            command, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.printed = [self.proc.stdout.readline() for _ in range(2)]
        urls = [line.strip() for line in self.printed if "http://" in line]
        if not urls:
            self.stop()
            pytest.fail(f"the dashboard did not start: {self.printed} {self.errors}")
        self.url = self.proc.stdout.readline().strip() if "0.0.0.0" in options else urls[0]
        self.base = re.sub(r"\?.*", "", self.url)

    def stop(self) -> None:
        """Ctrl-C, as a user stops it; then its output is read and its pipes closed."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, self.errors = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail("the dashboard did not stop on Ctrl-C")
        assert "Traceback" not in self.errors, self.errors


@pytest.fixture
def queue_cli(tmp_path: Path) -> Cli:
    """The installed CLI on a fresh SQLite queue with quick retries and polling, in a folder
    of a neutral name: the page shows the end of its location (``…/demo/queue.db``)."""
    db = tmp_path / "demo" / "queue.db"
    db.parent.mkdir()
    with connect(str(db)) as queue:
        queue.set_config("backoff_max", 0)
        queue.set_config("poll_interval_ms", 20)
    return Cli(db, tmp_path / "home")


Serve = Callable[..., Dashboard]


@pytest.fixture
def serve(queue_cli: Cli) -> Iterator[Serve]:
    """``serve(*options)``: a dashboard of the test's queue, stopped after the test."""
    started: list[Dashboard] = []

    def start(*options: str) -> Dashboard:
        started.append(Dashboard(queue_cli, *options))
        return started[-1]

    yield start
    for dashboard in started:
        dashboard.stop()


@pytest.fixture
def no_dialogs(page: Page) -> list[str]:
    """Every alert/confirm the page opens (none may)."""
    opened: list[str] = []

    def seen(dialog: Dialog) -> None:
        opened.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    return opened


def count(page: Page, state: str) -> Locator:
    return page.locator(f'#counts [data-count="{state}"]')


def test_the_page_follows_a_draining_pool_live_and_its_buttons_act(
    page: Page,
    serve: Serve,
    queue_cli: Cli,
    console_errors: ConsoleErrors,
    screenshot: Screenshot,
) -> None:
    cli = queue_cli
    cli.run("enqueue", "--id", "broken", "--max-retries", "0", "--", "echo failing; exit 3")
    cli.run("enqueue", "--id", "later", "--delay", "1h", "sleep 1")
    for n in range(8):
        cli.run("enqueue", "--id", f"step-{n}", "--group", "sweep", f"sleep 0.{n}; echo {n}")
    dashboard = serve()
    page.goto(dashboard.url)
    expect(count(page, "pending")).to_have_text("10")
    page.evaluate("window.notReloaded = true")
    pool = cli.popen("worker", "run", "--count", "3", stderr=subprocess.DEVNULL)
    try:
        expect(count(page, "completed")).to_have_text("8", timeout=LIVE_MS)
        expect(count(page, "dead")).to_have_text("1")
        expect(page.locator("#workers tbody tr td").first).to_contain_text(":")
        expect(page.locator("#progress-label")).to_have_text("9/10 finished")

        page.locator("#dead").get_by_role("button", name="Retry").click()  # a dead job
        wait_for(lambda: len(cli.json("show", "broken")["history"]) == 2, what="the retry")
        later = page.locator('#recent tr[data-id="later"]')
        later.get_by_role("button", name="Cancel").click()  # a pending job
        expect(later.locator(".state")).to_have_text("cancelled", timeout=LIVE_MS)
        assert cli.json("show", "later")["state"] == "cancelled"
        expect(page.locator("#flash")).to_contain_text("later: cancelled")
        for width in (900, 1100):  # no sideways scroll; the message lines up with the cards
            page.set_viewport_size({"width": width, "height": 1000})
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            flash = page.locator("#flash").bounding_box()
            card = page.locator("section.card").first.bounding_box()
            assert flash and card and (flash["x"], flash["width"]) == (card["x"], card["width"])
        assert page.evaluate("window.notReloaded") is True
        # the charts are drawn again as attempts finish, and show them
        charted = re.compile(r"v=([2-9]|\d\d+)$")
        expect(page.locator("#chart-runtimes")).to_have_attribute("src", charted, timeout=LIVE_MS)
        throughput = page.request.get(dashboard.base + "charts/throughput.svg").text()
        assert "no attempt finished" not in throughput and "#cf222e" in throughput
        expect(page.locator("#location")).to_have_text("…/demo/queue.db")
        assert (page.locator("#location").get_attribute("title") or "").endswith("/demo/queue.db")
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        picture = screenshot("dashboard")
        if os.environ.get("README_IMAGES"):  # make readme-images: the README's picture
            text = page.locator("body").inner_text()
            for private in ("/tmp", "/root", "/home", "/work", "pytest"):
                assert private not in text, f"{private!r} would be in the README's picture"
            shutil.copyfile(picture, ROOT / "docs" / "images" / "dashboard.png")
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=30)
    expect(page.locator("#workers tbody")).to_contain_text("No worker pool is running")
    assert console_errors.unexpected() == []


def test_read_only_shows_no_button_and_refuses_every_post(
    page: Page, serve: Serve, queue_cli: Cli, console_errors: ConsoleErrors
) -> None:
    queue_cli.run("enqueue", "--id", "waits", "--delay", "1h", "true")
    dashboard = serve("--read-only")
    for path in ("", "jobs", "jobs/waits", "dlq"):
        page.goto(dashboard.base + path)
        expect(page.locator("main")).to_be_visible()
        buttons = page.locator("button.btn-cancel, button.btn-retry, button.btn-pause")
        expect(buttons).to_have_count(0)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    for path in ("api/jobs/waits/cancel", "api/pause"):
        answer = page.request.post(dashboard.base + path, headers={"X-CSRF-Token": csrf})
        assert answer.status == 403, path
    assert queue_cli.json("show", "waits")["state"] == "pending"
    assert not queue_cli.json("status")["paused"]
    assert console_errors.unexpected() == []


def test_on_every_address_a_token_is_needed_and_without_it_nothing_changes(
    page: Page, serve: Serve, queue_cli: Cli, console_errors: ConsoleErrors
) -> None:
    queue_cli.run("enqueue", "--id", "waits", "--delay", "1h", "true")
    dashboard = serve("--host", "0.0.0.0")
    token = dashboard.url.split("?token=")[1]
    assert len(token) >= 24  # generated, and printed as Jupyter prints it
    for method, path in (("GET", ""), ("GET", "api/status"), ("POST", "api/pause")):
        request = urllib.request.Request(dashboard.base + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()  # (its socket, else a ResourceWarning when it is collected)
        assert refused.value.code == 401, path
    assert not queue_cli.json("status")["paused"]
    page.goto(dashboard.url)  # the token once, then the cookie
    expect(page).to_have_url(dashboard.base)
    expect(count(page, "pending")).to_have_text("1")
    page.goto(dashboard.base + "jobs/waits")
    expect(page.locator("#job-state")).to_have_text("pending")
    assert console_errors.unexpected() == []


def test_what_a_job_holds_is_shown_literally_on_every_page(
    page: Page,
    serve: Serve,
    queue_cli: Cli,
    console_errors: ConsoleErrors,
    no_dialogs: list[str],
) -> None:
    command = f"printf '%s \\033[31mred\\n' '{PROBE}'; echo '{PROBE}' >&2; exit 5"
    queue_cli.run("enqueue", "--id", "probe", "--max-retries", "0", "--group", "xss", command)
    queue_cli.run("worker", "run", "--until-empty")
    assert queue_cli.json("show", "probe")["state"] == "dead"
    dashboard = serve()
    for path in ("", "jobs", "jobs?q=script", "dlq", "jobs/probe"):
        page.goto(dashboard.base + path)
        expect(page.locator("main")).to_contain_text(PROBE)
        expect(page.locator("img[src=x]")).to_have_count(0)
    expect(page.locator("#attempts pre").first).to_contain_text(f"{PROBE} \\x1b[31mred")
    expect(page.locator("#job-command")).to_contain_text("\\033[31m")
    api = json.loads(page.request.get(dashboard.base + "api/jobs/probe").text())
    assert api["history"][0]["stdout"] == f"{PROBE} \x1b[31mred\n"  # JSON keeps the bytes
    page.wait_for_timeout(500)  # a live update or two: still nothing runs
    assert no_dialogs == []
    assert console_errors.unexpected() == []


def test_a_jobs_page_links_its_parents_and_children_and_says_why_a_retry_is_refused(
    page: Page, serve: Serve, queue_cli: Cli, console_errors: ConsoleErrors
) -> None:
    cli = queue_cli
    cli.run("enqueue", "--id", "fetch", "--max-retries", "0", "--", "exit 1")
    cli.run("enqueue", "--id", "report", "--after", "fetch", "true")
    cli.run("enqueue", "--id", "mail", "--after", "report", "true")
    dashboard = serve()
    page.goto(dashboard.base + "jobs/mail")
    expect(page.locator("#job-state")).to_have_text("blocked")
    expect(page.locator("#job-waiting")).to_have_text("waiting for 1 parent")
    colour = "getComputedStyle(document.querySelector('#job-state .state')).color"
    assert page.evaluate(colour) == "rgb(130, 80, 223)"  # blocked has a colour of its own
    page.locator("#job-actions").get_by_role("button", name="Cancel").click()  # blocked: may
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=LIVE_MS)
    expect(page.locator("#flash")).to_have_text("mail: cancelled")
    page.locator("#parents").get_by_role("link", name="report").click()
    expect(page).to_have_url(dashboard.base + "jobs/report")
    parent = page.locator('#parents li[data-id="fetch"]')
    expect(parent.locator(".state")).to_have_text("pending")
    expect(page.locator('#children li[data-id="mail"] .state')).to_have_text("cancelled")
    expect(page.locator("#after-rule")).to_have_text("runs once each one completed")
    cli.run("worker", "run", "--until-empty")  # fetch fails for good, and cancels report
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=LIVE_MS)  # live
    expect(parent.locator(".state")).to_have_text("dead")
    expect(page.locator('[data-field="last_error"]')).to_have_text("parent fetch is dead")
    expect(page.locator("#job-waiting")).to_be_hidden()
    page.locator("#job-actions").get_by_role("button", name="Retry").click()
    flash = page.locator("#flash.flash-error")
    expect(flash).to_contain_text("job 'report' cannot run: parent fetch is dead")
    expect(flash).to_contain_text("Retry that parent instead")
    expect(page.locator("#job-state")).to_have_text("cancelled")
    assert cli.json("show", "report")["state"] == "cancelled"
    page.set_viewport_size({"width": 900, "height": 1000})
    assert page.evaluate("document.documentElement.scrollWidth") <= 900
    # Chromium logs the refused request itself; the page said why, and nothing else failed
    refused = "409 (Conflict) (http://127.0.0.1"
    errors = console_errors.unexpected()
    assert [m for m in errors if refused in m and "/api/jobs/report/retry" in m] == errors
    assert len(errors) == 1


#: what the browser does when a tab goes to the background, or comes back
VISIBILITY = (
    "state => { Object.defineProperty(document, 'visibilityState', "
    "{value: state, configurable: true}); document.dispatchEvent(new Event('visibilitychange')); }"
)


def test_hidden_tabs_give_their_streams_back_so_a_seventh_tab_opens(
    page: Page, serve: Serve
) -> None:
    """A browser keeps 6 connections per host, and each page's event stream holds one."""
    dashboard = serve()
    tabs = [page, *(page.context.new_page() for _ in range(5))]
    for tab in tabs:
        tab.goto(dashboard.url)
        expect(tab.locator("#live")).to_have_text("live")
    for tab in tabs:
        tab.evaluate(VISIBILITY, "hidden")
        expect(tab.locator("#live")).to_have_text("paused")
    seventh = page.context.new_page()
    seventh.goto(dashboard.url, timeout=5000)
    expect(seventh.locator("#live")).to_have_text("live", timeout=5000)
    page.evaluate(VISIBILITY, "visible")  # back: live again at once
    expect(page.locator("#live")).to_have_text("live", timeout=5000)
