"""The panel as a notebook user drives it, in a real JupyterLab and a real browser: it stays
live while another cell runs, every click answers at once and is applied once, a replaced
panel says it stopped, and the example notebook runs with its panel rendered as widgets."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import ConsoleErrors, Screenshot
from tests.browser.lab import (
    LabServer,
    cells,
    code_prompts,
    open_notebook,
    run_all_cells,
    run_cell,
    wait_for_kernel_idle,
    write_notebook,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
QUEUED = "queued: runs when the running cell ends"

CELLS = [
    # two dead jobs and a long one, before the panel is shown
    "import queuectl, threading, time\n"
    'q = queuectl.connect("queue.db")\n'
    'q.enqueue("exit 3", id="dead-0", max_retries=0)\n'
    'q.enqueue("exit 3", id="dead-1", max_retries=0)\n'
    'q.enqueue("sleep 60", id="long")\n'
    "q.start_workers(3)\n"
    "while q.counts()[queuectl.State.DEAD] < 2 or q.counts()[queuectl.State.PROCESSING] < 1:\n"
    "    time.sleep(0.05)",
    "q.panel(interval=0.2)",
    # a busy cell: the panel must keep counting, and clicks wait for its end
    'for n in range(3):\n    q.enqueue("sleep 0.5", id=f"quick-{n}")\n'
    'while not q.wait(timeout=0.1, progress=False) and q.counts()["completed"] < 3:\n'
    "    pass\n"
    "time.sleep(3)",
    "q.panel(interval=0.2)",  # replaces the first panel
    'print(sum(t.name == "queuectl-panel" for t in threading.enumerate()))',
]


def label(panel: Locator) -> Locator:
    """The progress bar's label: "4/6 finished: 3 ok · 1 dead ..."."""
    return panel.locator("div", has_text=re.compile(r"^\d+/\d+ finished")).last


def button(panel: Locator, name: str) -> Locator:
    return panel.get_by_role("button", name=name, exact=True)


def test_a_click_while_a_cell_runs_is_queued_and_applied_once(
    lab_folder: Path,
    page: Page,
    jupyter_lab: LabServer,
    console_errors: ConsoleErrors,
    screenshot: Screenshot,
) -> None:
    write_notebook(lab_folder / "controls.ipynb", CELLS)
    open_notebook(page, jupyter_lab, f"{lab_folder.name}/controls.ipynb")
    for index in (0, 1):
        run_cell(page, index)
        expect(code_prompts(page).nth(index)).to_have_text(re.compile(r"^\[\d+\]:$"))
    wait_for_kernel_idle(page)
    panel = cells(page).nth(1).locator(".widget-vbox").first
    expect(label(panel)).to_have_text("2/3 finished: 2 dead · 1 running")

    run_cell(page, 2)  # busy for a few seconds
    expect(code_prompts(page).nth(2)).to_have_text("[*]:")
    # the refresher thread keeps the panel live while the cell runs
    expect(label(panel)).to_contain_text("3 ok")
    expect(code_prompts(page).nth(2)).to_have_text("[*]:")
    retry = button(panel, "Retry all dead")
    retry.click()
    # the browser answers at once; a second click cannot queue the action again
    expect(panel.get_by_text(QUEUED)).to_be_visible()
    expect(retry).to_be_disabled()
    screenshot("queued-click")
    # once the cell ends, the kernel handles the click once and names the jobs
    expect(code_prompts(page).nth(2)).to_have_text(re.compile(r"^\[\d+\]:$"))
    expect(panel.get_by_text("Retried dead-0, dead-1.")).to_have_count(1)
    expect(panel.get_by_text(QUEUED)).to_have_count(0)
    expect(retry).to_be_enabled()

    active = panel.locator("select").first
    active.select_option(label="long · processing · sleep 60")
    button(panel, "Cancel selected").click()
    expect(panel.get_by_text("stopping long (running).")).to_be_visible()
    expect(label(panel)).to_contain_text("1 cancelled")
    page.set_viewport_size({"width": 1000, "height": 1000})
    panel.scroll_into_view_if_needed()
    picture = screenshot("panel", panel)

    run_cell(page, 3)  # a newer panel of the same queue
    expect(panel.get_by_text("stopped: a newer panel of this queue shows it")).to_be_visible()
    expect(button(panel, "Retry all dead")).to_be_disabled()
    run_cell(page, 4)
    expect(cells(page).nth(4).locator(".jp-OutputArea-output")).to_have_text("1")
    wait_for_kernel_idle(page)
    assert console_errors.unexpected() == []
    if os.environ.get("README_IMAGES"):  # make readme-images: the README's picture
        shutil.copyfile(picture, ROOT / "docs" / "images" / "panel.png")


def test_the_quickstart_notebook_runs_with_its_panel_as_widgets(
    lab_folder: Path,
    page: Page,
    jupyter_lab: LabServer,
    console_errors: ConsoleErrors,
    screenshot: Screenshot,
) -> None:
    shutil.copyfile(ROOT / "notebooks" / "01-quickstart.ipynb", lab_folder / "quickstart.ipynb")
    open_notebook(page, jupyter_lab, f"{lab_folder.name}/quickstart.ipynb")
    run_all_cells(page, 14)
    panel = cells(page).locator(".jp-OutputArea-output .widget-vbox").first
    expect(panel).to_be_visible()
    expect(label(panel)).to_contain_text("finished")
    expect(panel.get_by_role("button", name="Retry all dead", exact=True)).to_be_visible()
    stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    expect(cells(page).locator(stderr)).to_have_count(0)
    # a narrow notebook (900 px, the file browser open): nothing sticks out of the output
    page.set_viewport_size({"width": 900, "height": 1000})
    expect(page.locator(".jp-FileBrowser")).to_be_visible()
    panel.scroll_into_view_if_needed()
    output = panel.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')]")
    width = output.evaluate("node => node.clientWidth")
    assert panel.evaluate("node => node.scrollWidth") <= width
    screenshot("narrow", output)
    assert console_errors.unexpected() == []
