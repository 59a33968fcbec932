"""The panel in a real Jupyter kernel: updates made by its refresher thread reach the frontend.

ipykernel 7.0.x dropped widget updates sent from threads; this catches such a regression. The
notebook client records every widget model state the kernel sends, so the final state of the
panel's progress bar tells whether the thread's updates went out.
"""

from __future__ import annotations

from pathlib import Path

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from queuectl.model import State

CELLS = [
    "import queuectl, threading\nq = queuectl.connect({db!r})\npanel = q.panel(interval=0.1)\n"
    "panel",
    "for n in range(3):\n    q.enqueue('true', id=f'job-{{n}}')",
    # The refresher thread, not a cell, updates the panel. This records when one of its rounds
    # has ended with the awaited count done: by then every widget message of that round is
    # queued on the kernel's IOPub channel, ahead of the idle status that ends the cell waiting
    # for it. (The client keeps only messages sent while a cell runs: the awaited count is
    # one that only the cell waiting for it can bring about.)
    "caught_up = threading.Event()\n"
    "target = None\n"
    "refresh = panel.refresh\n"
    "def observed():\n"
    "    refresh()\n"
    "    if target is not None and target in panel.progress.value:\n"
    "        caught_up.set()\n"
    "panel.refresh = observed",
    "q.start_workers(2)\nassert q.wait(timeout=30, progress=False)",
    "target = '4/4 finished'\n"
    "q.enqueue('true', id='job-3')\n"
    "assert q.wait(timeout=30, progress=False)\n"
    "assert caught_up.wait(30), 'the refresher never saw the jobs done'\n"
    "print(target in panel.progress.value)",
    "q.stop_workers(wait=True)\nq.close()",
]


def test_panel_updates_from_its_thread_reach_the_frontend(tmp_path: Path) -> None:
    notebook = new_notebook(
        cells=[new_code_cell(c.format(db=str(tmp_path / "q.db"))) for c in CELLS]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True).execute()

    assert notebook.cells[4].outputs[0]["text"] == "True\n"
    for cell in notebook.cells:
        assert all(o["output_type"] != "error" for o in cell.outputs)
        assert all(o.get("name") != "stderr" for o in cell.outputs), cell.outputs
    states = notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    shown = [m["state"]["value"] for m in states.values() if m["model_name"] == "HTMLModel"]
    assert [value for value in shown if "finished" in value and "</div>" in value] == [
        panel_progress(4)
    ]


def panel_progress(completed: int) -> str:
    """The progress bar of a queue whose ``completed`` jobs are all it holds."""
    from queuectl.panel import progress_html

    return progress_html({state: 0 for state in State} | {State.COMPLETED: completed})


def test_a_saved_notebook_shows_how_a_wait_ended(tmp_path: Path) -> None:
    """The bar's text (what a notebook shows where widgets do not render) is brought up to
    date when the wait ends: no bar frozen at 0%."""
    cells = [
        f"import queuectl\nq = queuectl.connect({str(tmp_path / 'q.db')!r})\n"
        "for n in range(3):\n    q.enqueue('true', delay=0.5)\nq.start_workers(2)",  # not done yet
        "q.wait(timeout=60)",
        "q.stop_workers(wait=True)\nq.close()",
    ]
    notebook = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    shown = [o for o in notebook.cells[1].outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1, notebook.cells[1].outputs
    text = shown[0]["data"]["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in shown[0]["data"]
    assert "100%" in text and "3/3" in text and "completed=3" in text, text
