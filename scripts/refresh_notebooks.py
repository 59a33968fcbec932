"""Re-execute the example notebooks in place and strip what changes on every run.

    .venv/bin/python scripts/refresh_notebooks.py [notebooks/NAME.ipynb ...]

Run it after changing a notebook or the output of a command it shows, review the diff, and
commit. A live panel's output gets the panel's final state as static HTML. The stored outputs
are what ``make test`` compares (nbval, with the substitutions of
``tests/nbval_sanitize.cfg``). Widget state and execution timings are dropped: they differ on
every run and nbval does not compare them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@contextmanager
def environment(path: Path) -> Iterator[None]:
    """04-scale-out runs against a throwaway PostgreSQL server, as in the test run."""
    if path.name != "04-scale-out.ipynb":
        yield
        return
    sys.path.insert(0, str(ROOT))
    from tests.pg_server import destroy_session_server, session_server

    server = session_server()
    saved = dict(os.environ)
    home = tempfile.mkdtemp(prefix="queuectl-scale-home-")
    os.environ.update(QUEUECTL_DB=server.create_database(), QUEUECTL_HOME=home)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)
        destroy_session_server()


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=False,
    )
    with environment(path), client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        probe = nbformat.v4.new_code_cell(
            "import json, queuectl.panel\nprint(json.dumps(queuectl.panel.saved_views()))"
        )
        notebook.cells.append(probe)  # (nbclient records a cell's outputs in the notebook)
        client.execute_cell(probe, len(notebook.cells) - 1)
        notebook.cells.pop()
    printed = next(o for o in probe.outputs if o.get("name") == "stdout")
    store_final_panels(notebook, json.loads(printed["text"]))
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    nbformat.write(notebook, path)
    print(f"refreshed {path.relative_to(ROOT)}")


def store_final_panels(notebook: nbformat.NotebookNode, views: dict[str, str]) -> None:
    """Where a cell shows a live panel, store the panel's final state as its HTML (what a
    reader of the saved notebook sees where widgets do not render) and a text without the
    run's temporary folder. Such a cell's output differs on every run: nbval skips it."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if not view or view.get("model_id") not in views:
                continue
            output["data"]["text/html"] = views[view["model_id"]]
            text = output["data"].get("text/plain", "")
            output["data"]["text/plain"] = re.sub(r"\(\S*/", "(", text)  # QueuePanel(queue.db)
            tags = cell.metadata.setdefault("tags", [])
            if "nbval-ignore-output" not in tags:
                tags.append("nbval-ignore-output")


def main(args: list[str]) -> None:
    paths = [Path(a).resolve() for a in args] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        refresh(path)


if __name__ == "__main__":
    main(sys.argv[1:])
