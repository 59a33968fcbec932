"""A writer process of the concurrency test: ``python -m tests.reliability.writer TARGET NAME N``.

Enqueues N jobs one by one (each its own transaction), every ``CLI_EVERY``-th through the
installed CLI instead of the Python API, and prints one JSON line: how many enqueues succeeded
and the message of every one that did not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import queuectl

CLI_EVERY = 40


def main(target: str, name: str, count: int) -> None:
    command = [str(Path(sys.executable).with_name("queuectl")), "--db", target, "enqueue"]
    ok, errors = 0, []
    with queuectl.connect(target) as queue:
        for n in range(count):
            job_id = f"{name}-{n:04d}"
            if n % CLI_EVERY == 0:
                proc = subprocess.run(
                    [*command, "--id", job_id, "echo $QUEUECTL_JOB_ID"],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode == 0 and proc.stdout == f"{job_id}\n":
                    ok += 1
                else:
                    errors.append(f"cli exit {proc.returncode}: {proc.stderr.strip()}")
                continue
            try:
                queue.enqueue("echo $QUEUECTL_JOB_ID", id=job_id)
                ok += 1
            except queuectl.QueuectlError as exc:
                errors.append(f"api: {exc}")
    print(json.dumps({"ok": ok, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
