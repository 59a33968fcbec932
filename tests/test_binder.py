"""binder/ installs the project into a fresh environment where the notebooks run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
BINDER_NOTEBOOKS = ("01-quickstart.ipynb", "05-parameter-sweep.ipynb")


def test_binder_folder_is_what_repo2docker_reads() -> None:
    assert BINDER.is_dir() and not (ROOT / ".binder").exists()
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    assert "-e ." in requirements, "binder ignores pyproject.toml: it must install the project"
    assert any(re.fullmatch(r"ipykernel>=7\.[1-9]\d*", line) for line in requirements)
    assert re.fullmatch(r"python-3\.\d+\n", (BINDER / "runtime.txt").read_text())
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK)
    lines = post_build.read_text().splitlines()
    assert lines[0] == "#!/bin/bash" and "set -euo pipefail" in lines


@pytest.mark.slow
@pytest.mark.timeout(400)  # a fresh venv from PyPI, then two notebooks: a minute or more
def test_binder_requirements_install_the_project_and_the_notebooks_run(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "QUEUECTL_HOME": str(tmp_path / "home"),
    }
    env.pop("PYTHONPATH", None)

    def run(*args: str) -> None:
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"

    # As repo2docker does: pip from the repository root, then postBuild.
    # (--no-compile: bytecode is written on first import instead, for the modules used)
    run(
        str(venv / "bin" / "pip"),
        "install",
        "--quiet",
        "--no-compile",
        "-r",
        "binder/requirements.txt",
    )
    run("bash", "binder/postBuild")
    # The quickstart (the panel's widgets, the magic) and the sweep (matplotlib, the plot
    # extra) import everything the others do; every notebook runs under nbval in `make test`.
    # (04-scale-out needs a PostgreSQL server, which Binder does not have.)
    notebooks = [str(ROOT / "notebooks" / name) for name in BINDER_NOTEBOOKS]
    run(str(venv / "bin" / "jupyter"), "execute", "--timeout=300", *notebooks)
