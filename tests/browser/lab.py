"""A throwaway JupyterLab server for the test session, and the steps of using a notebook in it.

The server runs on this environment's Python (``sys.executable -m jupyter lab``), so its
default ``python3`` kernel is the venv's interpreter: the one with queuectl and ipywidgets'
lab extension (jupyter_client runs a kernel spec whose command is ``python`` with the server's
own interpreter). It listens on 127.0.0.1 on a port it picks itself (``--port=0``: no race for
a free port) and writes which one to its server file in its runtime folder; a token guards it.
Everything it reads or writes besides the venv (config, settings, workspaces, runtime files,
IPython's profile, the kernels' queue home) lives in one temporary folder, so a developer's
own Jupyter set-up cannot change what the tests see, and nothing is left behind.

The browser side drives JupyterLab's UI as a user does: open the notebook, wait until its
kernel is idle, Run > Run All Cells, wait until every cell has run. Every wait is Playwright's
(``expect``), with generous timeouts: a slow machine makes the tests slower, not red.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Locator, Page, expect

from tests.orphans import claim, orphaned

FOLDER_PREFIX = "queuectl-lab-"
KERNEL_NAME = "python3"
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"
#: for every wait in the browser: JupyterLab's first page load compiles a lot of JavaScript
TIMEOUT_MS = 60_000
#: the notebook shown (JupyterLab keeps hidden ones in the page)
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
#: for the server to start and to stop (its start also scans the installed lab extensions)
SERVER_TIMEOUT = 120.0


class LabServer:
    """One JupyterLab server, serving the folder ``root``, its output in ``log``."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        claim(self.folder)
        self.root = self.folder / "root"
        self.root.mkdir()
        self.runtime = self.folder / "runtime"
        self.log = self.folder / "lab.log"
        self.token = secrets.token_hex(16)
        self.url = ""  #: http://127.0.0.1:PORT/, once started
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LabServer({self.url or 'not started'}, root={self.root}, log={self.log})"

    # -- the server ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers requests."""
        private = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",  # no user kernel spec can shadow the venv's python3
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",  # no tabs restored from another run
            "IPYTHONDIR": "ipython",  # no startup files of the developer's profile
            "QUEUECTL_HOME": "queuectl-home",
        }
        # A user's answer to "Would you like to get notified about official Jupyter news?": no.
        # Otherwise a toast asks, on top of the page, on every load.
        notification = self.folder / "settings/@jupyterlab/apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {name: value for name, value in os.environ.items() if name != "JUPYTER_PATH"}
        env.update({name: str(self.folder / sub) for name, sub in private.items()})
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            "--port=0",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            # Nothing from the internet: no news feed, no update check, no extension listing
            # from PyPI.
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class="
            "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        with self.log.open("wb") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl+C in the terminal goes to pytest alone
            )
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"JupyterLab did not start in {SERVER_TIMEOUT:g} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        """Whether the server has written its server file and answers on that port."""
        infos = list(self.runtime.glob("jpserver-*.json"))
        if not infos:
            return False
        with contextlib.suppress(ValueError, OSError):  # a file still being written
            self.url = json.loads(infos[0].read_text())["url"]
            self.api("GET", "api/status")
            return True
        return False

    def stop(self) -> None:
        """Shut the server down (its kernels first), wait for it, and delete its folder.

        Raises RuntimeError, after killing them, if the server did not stop or left processes
        (kernels) running: a shutdown that leaves processes behind is a bug to see.
        """
        problems = []
        try:
            if self.process is not None:
                if self.process.poll() is None:
                    # The server may close the connection before it answers: no matter.
                    with contextlib.suppress(OSError):
                        self.api("POST", "api/shutdown")
                try:
                    self.process.wait(timeout=SERVER_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    problems.append(f"JupyterLab did not stop in {SERVER_TIMEOUT:g} s")
            if left := kill_processes_of(self.folder):
                problems.append(f"killed processes JupyterLab left running: {left}")
            if problems:
                problems.append(self.tail())
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        if problems:
            raise RuntimeError("\n".join(problems))

    def tail(self, chars: int = 5000) -> str:
        """The end of the server's output."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # -- its REST API -------------------------------------------------------------------------

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API (``path`` relative to the server's URL); the decoded
        JSON answer, or None when there is none."""
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End every notebook session and its kernel (between tests)."""
        for session in self.api("GET", "api/sessions"):
            self.api("DELETE", f"api/sessions/{session['id']}")
        for kernel in self.api("GET", "api/kernels"):
            self.api("DELETE", f"api/kernels/{kernel['id']}")

    # -- notebooks ----------------------------------------------------------------------------

    def page_url(self, path: str) -> str:
        """The URL that opens ``path`` (relative to ``root``) in JupyterLab, token included."""
        # (reset: a fresh workspace, without the tabs earlier tests left open)
        return f"{self.url}lab/tree/{path}?reset&token={self.token}"


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells for the venv's kernel (named, so JupyterLab asks nothing)."""
    notebook = new_notebook(
        cells=[new_code_cell(source) for source in cells],
        metadata={
            "kernelspec": {
                "name": KERNEL_NAME,
                "display_name": KERNEL_DISPLAY_NAME,
                "language": "python",
            }
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def open_notebook(page: Page, lab: LabServer, path: str) -> None:
    """Open the notebook at ``path`` (relative to the server's root) and wait until its
    kernel has started and is idle."""
    page.goto(lab.page_url(path))
    wait_for_kernel_idle(page)


def notebook_toolbar(page: Page) -> Locator:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar")


def wait_for_kernel_idle(page: Page) -> None:
    """Wait until the notebook's kernel is the venv's and idle.

    The execution indicator alone is not enough: it reads "idle" before the notebook has any
    kernel at all ("No Kernel | Initializing"); the kernel's name appears once it is attached.
    """
    toolbar = notebook_toolbar(page)
    expect(toolbar.locator(".jp-KernelName")).to_have_text(KERNEL_DISPLAY_NAME, timeout=TIMEOUT_MS)
    expect(toolbar.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=TIMEOUT_MS
    )


def cells(page: Page) -> Locator:
    """The cells of the open notebook."""
    return page.locator(f"{NOTEBOOK} .jp-Cell")


def run_all_cells(page: Page, count: int, wait: bool = True) -> None:
    """Run > Run All Cells, then (with ``wait``) wait until all ``count`` code cells have run
    and the kernel is idle.

    A cell has run when its prompt shows an execution count, "[3]:" (queued or running cells
    show "[*]:", cells never run "[ ]:"); in a fresh notebook no count is a stale one.
    """
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    # The item's accessible name also holds its keyboard shortcut, if it has one.
    page.locator(".lm-Menu").get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    if not wait:
        return
    ran = re.compile(r"^\[\d+\]:$")
    expect(code_prompts(page)).to_have_text([ran] * count, timeout=TIMEOUT_MS)
    wait_for_kernel_idle(page)


def code_prompts(page: Page) -> Locator:
    """The input prompts of the open notebook's code cells ("[3]:", "[*]:", "[ ]:")."""
    return page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt")


def run_cell(page: Page, index: int) -> None:
    """Run the ``index``-th cell alone, not waiting for it to end: select it by its prompt
    (command mode) and press Ctrl+Enter once JupyterLab shows it active."""
    cell = cells(page).nth(index)
    cell.locator(".jp-InputPrompt").click()
    expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
    page.keyboard.press("Control+Enter")


def processes_of(folder: Path) -> list[int]:
    """The processes whose command line names something inside ``folder``: a server serving
    a root there, its kernels (their connection files are in its runtime folder)."""
    needle = str(folder).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def kill_processes_of(folder: Path) -> list[int]:
    """Kill the processes of ``processes_of(folder)``; return their pids."""
    left = processes_of(folder)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def reap_orphans() -> list[Path]:
    """Kill the servers (and kernels) of test sessions that died without stopping them
    (killed, say, by a CI timeout), and delete their folders; return the folders. Those of
    live sessions are left alone."""
    reaped = []
    for folder in orphaned(FOLDER_PREFIX):
        kill_processes_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped
