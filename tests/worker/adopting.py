"""Scenarios of a process that adopts its jobs' orphans, as ``queuectl worker run`` does.

Run as ``python -m tests.worker.adopting SCENARIO ARG``: it must be a process of its own, since a
subreaper's unknown children are taken for orphans of jobs (pytest has children of its own).
Prints one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from queuectl.worker import procfs
from queuectl.worker.escapes import TRACKER
from queuectl.worker.runner import run_command
from queuectl.worker.subreaper import adopt_orphans


def marker_env(job: str, attempt: int = 1, worker: str = "adopting-test") -> dict[str, str]:
    return {"QUEUECTL_JOB_ID": job, "QUEUECTL_ATTEMPT": str(attempt), "QUEUECTL_WORKER_ID": worker}


def living(needle: str) -> list[int]:
    """Pids of the live (not zombie) processes whose command line starts with ``needle``."""
    found = []
    for pid in procfs.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        stat = procfs.read_stat(pid)
        if cmdline.startswith(needle.encode()) and stat is not None and stat.state not in b"ZXx":
            found.append(pid)
    return found


def zombies_of_mine() -> list[int]:
    mine = procfs.children(os.getpid())
    return [p for p in mine if (s := procfs.read_stat(p)) is not None and s.state in b"ZXx"]


def exit_codes(threads: str) -> dict[str, Any]:
    """Many short jobs on several threads and the main one, most leaving orphans for the sweeps
    to kill and reap while other threads start and wait for their shells: each must get its own
    exit code, and nothing may be left."""
    wrong: list[tuple[int, int | None]] = []
    needle = f"3{os.getpid()}"

    def work(n: int) -> None:
        for k in range(40):
            code = (n * 40 + k) % 7 + 1
            leave = "" if k % 3 == 0 else f"(sleep {needle} &) ; setsid sleep {needle} & "
            result = run_command(f"{leave}exit {code}", env=marker_env(f"j{n}-{k}"))
            if result.exit_code != code:
                wrong.append((code, result.exit_code))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(int(threads))]
    for t in workers:
        t.start()
    work(len(workers))  # the main thread too: its children are listed with the orphans
    for t in workers:
        t.join()
    return {"wrong": wrong, "zombies": zombies_of_mine(), "left": living(f"sleep {needle}")}


def escapes(needle: str) -> dict[str, Any]:
    """A job whose processes leave its group every way: all gone once it is done."""
    command = (
        f"setsid sleep {needle}1 & "
        f"sh -c 'sh -c \"sleep {needle}2 &\" &' ; "  # a double fork: the daemon's parent exits
        f"env -i setsid sleep {needle}3 & "  # no marker: found by its start time
        f"until [ $(pgrep -fc '^sleep {needle}') -ge 3 ]; do sleep 0.01; done; echo started"
    )
    result = run_command(command, env=marker_env("escapes"))
    return {
        "stdout": result.stdout.decode(),
        "left": living(f"sleep {needle}"),
        "zombies": zombies_of_mine(),
    }


def concurrent(needle: str) -> dict[str, Any]:
    """Orphans of a running attempt survive the end of another one; they go with their own."""
    folder = Path(needle.replace(".", "-"))
    folder.mkdir()
    started, release = folder / "started", folder / "release"
    long_job = (
        # adopted while the job runs: their parent (the subshell) exits at once
        f"(setsid sleep {needle}1 &) ; (env -i setsid sleep {needle}2 &) ; "
        f"until [ $(pgrep -fc '^sleep {needle}') -ge 2 ]; do sleep 0.01; done; touch {started}; "
        f"until [ -e {release} ]; do sleep 0.01; done"
    )
    results: dict[str, Any] = {}
    a = threading.Thread(
        target=lambda: results.update(a=run_command(long_job, env=marker_env("a")).exit_code)
    )
    a.start()
    _wait(started.exists)
    run_command("true", env=marker_env("b"))
    results["after_b"] = living(f"sleep {needle}")
    release.touch()
    a.join()
    results["after_a"] = living(f"sleep {needle}")
    return results


def late_exit(needle: str) -> dict[str, Any]:
    """An orphan of a running attempt that ends on its own is reaped by ``TRACKER.reap`` (the
    pool's backstop), not left a zombie until the attempt ends."""
    folder = Path(needle.replace(".", "-"))
    folder.mkdir()
    release = folder / "release"
    job = f"(setsid sleep 0.{needle[-2:]} &) ; until [ -e {release} ]; do sleep 0.01; done"
    a = threading.Thread(target=lambda: run_command(job, env=marker_env("a")))
    a.start()
    _wait(lambda: bool(zombies_of_mine()))
    before = zombies_of_mine()
    TRACKER.reap()
    after = zombies_of_mine()
    release.touch()
    a.join()
    return {"before": len(before), "after": after}


def _wait(predicate: Callable[[], bool]) -> None:
    while not predicate():
        threading.Event().wait(0.01)


SCENARIOS: dict[str, Callable[[str], dict[str, Any]]] = {
    "exit_codes": exit_codes,
    "escapes": escapes,
    "concurrent": concurrent,
    "late_exit": late_exit,
}


def main() -> None:
    scenario, arg = sys.argv[1:3]
    with adopt_orphans() as adopting:
        assert adopting and TRACKER.adopting
        report = SCENARIOS[scenario](arg)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
