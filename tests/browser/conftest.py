"""Real-browser tests: headless Chromium driven by Playwright, against real servers.

The browser is Debian's ``chromium`` package (``/usr/bin/chromium``), launched by Playwright
with ``executable_path``: Playwright's own browser download is never used (CI machines cannot
reach it). Without that browser these tests are skipped, with the reason in the summary; under
CI (``CI=true``) they fail instead. ``.ci/run`` installs it.

One browser and one JupyterLab server (``lab.py``) for this folder's tests, closed after them.
Each test gets a fresh browser context (no cookies or storage shared with other tests), a page
whose console errors are collected for the test to check, and a folder of its own in the
server's root. Screenshots go to the test's ``tmp_path`` and, when ``QUEUECTL_SCREENSHOTS``
names a folder, there too; a test that fails leaves one of the page as it was at the failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn, Protocol

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.browser.lab import TIMEOUT_MS, LabServer, reap_orphans

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS_VARIABLE = "QUEUECTL_SCREENSHOTS"
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}

#: Console errors that say nothing about the page under test, each with the reason. None so
#: far: JupyterLab 4 with the widgets extension logs no error when it runs from 127.0.0.1
#: with its news feed and update check turned off (see ``lab.py``).
BENIGN: tuple[tuple[re.Pattern[str], str], ...] = ()


def unavailable(reason: str) -> NoReturn:
    """Skip the test, loudly; under ``CI=true`` fail it: CI must not go green untested."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def chromium_path() -> str:
    """Debian's Chromium; skips the test (fails it under ``CI=true``) when it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(
            f"Chromium not found at {CHROMIUM}: the browser tests (the Jupyter panel in "
            "JupyterLab) are NOT run. Install it (Debian: apt-get install chromium); "
            "Playwright's own browser download is not used."
        )
    return CHROMIUM


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Browser]:
    """A headless Chromium for the whole session."""
    args = [
        # CI containers give /dev/shm 64 MB, too little for Chromium: use /tmp instead.
        "--disable-dev-shm-usage",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=args
        )
        try:
            yield launched
        finally:
            launched.close()


class ConsoleErrors:
    """What the page reported as errors: console.error calls (failed requests included, as
    "Failed to load resource") and uncaught exceptions."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location
            self.messages.append(f"{message.text} ({where['url']}:{where['lineNumber']})")

    def on_page_error(self, error: Error) -> None:
        self.messages.append(f"uncaught {error.name}: {error.message}\n{error.stack or ''}")

    def unexpected(self) -> list[str]:
        """The errors, less the known-benign ones of ``BENIGN``."""
        return [m for m in self.messages if not any(p.search(m) for p, _ in BENIGN)]


@pytest.fixture
def console_errors() -> ConsoleErrors:
    """The errors of the test's ``page`` (collected from its start)."""
    return ConsoleErrors()


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item: ``page`` takes a screenshot when the test failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def page(
    browser: Browser,
    console_errors: ConsoleErrors,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Page]:
    """A page in a fresh browser context; every wait and action in it may take a minute."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    opened = context.new_page()
    opened.on("console", console_errors.on_console)
    opened.on("pageerror", console_errors.on_page_error)
    try:
        yield opened
        call = request.node.stash.get(REPORTS, {}).get("call")
        if call is not None and call.failed:
            save_screenshot(opened, tmp_path, request.node.name, "failure")
            (tmp_path / "console-errors.txt").write_text("\n".join(console_errors.messages))
    finally:
        context.close()


class Screenshot(Protocol):
    def __call__(self, name: str, target: Locator | None = None) -> Path: ...


@pytest.fixture
def screenshot(page: Page, tmp_path: Path, request: pytest.FixtureRequest) -> Screenshot:
    """``screenshot(name)`` saves the page (or ``screenshot(name, locator)`` one element) as
    ``name.png`` in ``tmp_path``, and in the folder ``QUEUECTL_SCREENSHOTS`` names, if any;
    returns the first path."""

    def take(name: str, target: Locator | None = None) -> Path:
        return save_screenshot(target or page, tmp_path, request.node.name, name)

    return take


def save_screenshot(target: Page | Locator, tmp_path: Path, test: str, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    target.screenshot(path=path)
    if folder := screenshots_folder():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / re.sub(r"[^\w.-]+", "_", f"{test}-{name}.png"))
    return path


def screenshots_folder() -> Path | None:
    """The folder ``QUEUECTL_SCREENSHOTS`` names, if set."""
    value = os.environ.get(SCREENSHOTS_VARIABLE)
    return Path(value) if value else None


@pytest.fixture(scope="package")
def jupyter_lab(chromium_path: str) -> Iterator[LabServer]:
    """A JupyterLab server for the whole session (its ``url``, ``token``, ``root``, ``log``),
    shut down, waited for and deleted at its end; the venv's kernel is its ``python3``.

    Only a browser uses it: without one the test is skipped before the server starts."""
    reap_orphans()
    server = LabServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab_folder(jupyter_lab: LabServer, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder of this test's own in the server's root (its path there is ``.name``); the
    kernels started meanwhile are shut down after the test."""
    folder = jupyter_lab.root / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir()
    yield folder
    jupyter_lab.shut_down_kernels()
