"""The panel in a real Jupyter kernel: updates made by its refresher thread reach the frontend.

ipykernel 7.0.x dropped widget updates sent from threads; this catches such a regression. The
notebook client records every widget model state the kernel sends, so the final state of the
panel's progress bar tells whether the thread's updates went out.
"""

from __future__ import annotations

from pathlib import Path

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

CELLS = [
    "import queuectl, time\nq = queuectl.connect({db!r})\npanel = q.panel(interval=0.1)\npanel",
    "for n in range(3):\n    q.enqueue('true', id=f'job-{{n}}')",
    "q.start_workers(2)\nassert q.wait(timeout=30, progress=False)",
    # The refresher thread, not this cell, updates the panel; give it a few rounds.
    "deadline = time.monotonic() + 30\n"
    "while panel.progress.value != 3 and time.monotonic() < deadline:\n"
    "    time.sleep(0.05)\n"
    "time.sleep(0.3)\n"
    "print(panel.progress.description)",
    "q.stop_workers(wait=True)\nq.close()",
]


def test_panel_updates_from_its_thread_reach_the_frontend(tmp_path: Path) -> None:
    notebook = new_notebook(
        cells=[new_code_cell(c.format(db=str(tmp_path / "q.db"))) for c in CELLS]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True).execute()

    assert notebook.cells[3].outputs[0]["text"] == "3/3 done\n"
    for cell in notebook.cells:
        assert all(o["output_type"] != "error" for o in cell.outputs)
        assert all(o.get("name") != "stderr" for o in cell.outputs), cell.outputs
    states = notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in states.values() if m["model_name"] == "IntProgressModel"]
    assert [(bar["value"], bar["max"], bar["description"]) for bar in bars] == [(3, 3, "3/3 done")]
