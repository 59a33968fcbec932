"""`enqueue --file`: many jobs in one transaction, from a file or stdin; all or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


def test_a_file_of_jobs_is_enqueued_in_order(cli: Cli, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"id": "a", "command": "echo a"}\n'
        "\n"
        "echo plain command\n"
        '{"command": "echo c", "priority": 3}\n'
    )
    out = cli.run("enqueue", "--max-retries", "7", "--file", str(jobs)).stdout.split()
    assert out[0] == "a" and len(out) == 3
    listed = {job["id"]: job for job in cli.json("list")}
    assert listed["a"]["max_retries"] == 7 and listed[out[2]]["priority"] == 3
    assert listed[out[1]]["command"] == "echo plain command"


def test_lines_may_carry_params_a_group_and_tags(cli: Cli, tmp_path: Path) -> None:
    jobs = tmp_path / "sweep.jsonl"
    jobs.write_text(
        "".join(
            f'{{"id": "p{n}", "command": "echo {{lr}} {{{{x}}}}", "params": {{"lr": {lr}}}}}\n'
            for n, lr in enumerate((0.1, 0.2))
        )
    )
    cli.run("enqueue", "--group", "file", "--tag", "t", "--file", str(jobs))
    job = cli.json("show", "p1")
    assert (job["command"], job["params"], job["group"], job["tags"]) == (
        "echo 0.2 {x}",
        {"lr": 0.2},
        "file",
        ["t"],
    )
    assert [j["id"] for j in cli.json("list", "--group", "file", "--tag", "t")] == ["p1", "p0"]


def test_jobs_can_come_from_stdin(cli: Cli) -> None:
    lines = "".join(f'{{"id": "s{n}", "command": "true"}}\n' for n in range(500))
    proc = cli.run("enqueue", "--file", "-", input=lines.encode())
    assert proc.stdout.split() == [f"s{n}" for n in range(500)]
    assert cli.json("status")["counts"]["pending"] == 500


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"command": "true"}\n{"command": }\n', [], "line 2: invalid job JSON"),
        ('{"command": "true", "priority": 1}\n', ["--priority", "2"], "line 1: priority is given"),
        ('{"command": "true", "group": "a"}\n', ["--group", "b"], "line 1: group is given"),
        ('{"command": "echo {y}", "params": {"x": 1}}\n', [], "line 1: the command names"),
        ('{"id": "x", "command": "a"}\n{"id": "x", "command": "b"}\n', [], "'x' is given twice"),
        ('{"id": "dup", "command": "a"}\n', [], "exists"),
        ("\n  \n", [], "the file has no jobs"),
        ('{"command": "true"}\n', ["--id", "one"], "--id names a single job"),
        ('{"command": "true"}\n', ["echo", "too"], "not both"),
        ('{"comand": "true"}\n', [], "line 1: unknown job field 'comand'"),
    ],
)
def test_a_bad_line_refuses_the_whole_file(
    cli: Cli, tmp_path: Path, content: str, args: list[str], message: str
) -> None:
    cli.run("enqueue", "--id", "dup", "true")
    before = cli.checksum()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(content)
    proc = cli.run("enqueue", "--file", str(jobs), *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert cli.checksum() == before


def test_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("enqueue", "--file", str(tmp_path / "nope.jsonl"), check=False)
    assert proc.returncode == 2 and "No such file or directory" in proc.stderr
