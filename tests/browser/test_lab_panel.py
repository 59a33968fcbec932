"""The live panel in a real JupyterLab, seen in a real browser.

A notebook runs a job through a queue in a real kernel (the venv's) and shows ``q.panel()``;
Chromium opens it in JupyterLab, runs all cells from the Run menu, and the test reads what the
ipywidgets front end rendered: the job completed, and the page logged no error.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from queuectl.model import State
from tests.browser.conftest import ConsoleErrors, Screenshot
from tests.browser.lab import LabServer, cells, open_notebook, run_all_cells, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    # The kernel is the venv's interpreter (the one the tests run on).
    "import sys\nprint(sys.prefix)",
    'import queuectl\nq = queuectl.connect("queue.db")',  # in the notebook's folder
    'q.enqueue("true", id="first")\nq.start_workers(1)',
    "q.wait(timeout=60)",
    "q.panel()",
]

STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def test_panel_shows_the_completed_job(
    lab_folder: Path,
    page: Page,
    jupyter_lab: LabServer,
    console_errors: ConsoleErrors,
    screenshot: Screenshot,
) -> None:
    write_notebook(lab_folder / "panel.ipynb", CELLS)
    open_notebook(page, jupyter_lab, f"{lab_folder.name}/panel.ipynb")
    run_all_cells(page, len(CELLS))

    outputs = [cells(page).nth(n).locator(".jp-OutputArea-output") for n in range(len(CELLS))]
    expect(outputs[0]).to_have_text(sys.prefix)
    expect(cells(page).locator(STDERR)).to_have_count(0)  # no traceback, no warning
    expect(outputs[3].last).to_have_text("True")  # after wait's progress bar: its result

    panel = outputs[4].locator(".widget-vbox").first  # rendered by the widgets extension
    expect(panel).to_be_visible()
    # What the panel says, not how it lays it out: the counts per state, and the job's row.
    counts = panel.locator("table").filter(has=page.locator("th", has_text=re.compile("^pending$")))
    expect(counts.locator("th")).to_have_text([state.value for state in State])
    expect(counts.locator("td")).to_have_text(
        ["1" if state is State.COMPLETED else "0" for state in State]
    )
    job = panel.locator("tr").filter(has=page.locator("td", has_text=re.compile(r"^first$")))
    expect(job.locator("td").filter(has_text=re.compile(r"^completed$"))).to_have_count(1)

    panel.scroll_into_view_if_needed()
    screenshot("lab-panel")
    screenshot("panel", panel)
    assert console_errors.unexpected() == []
