"""Big and strange output: bounded memory, the stored tail is the end, bytes round-trip."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import QUEUECTL, Cli, wait_for
from tests.reliability.conftest import Figure, Pools, status_kib

GIB = 1 << 30
KEEP = 65536  # output_max_bytes, the default


def stream_tail(pattern: bytes, size: int, end: bytes, keep: int) -> bytes:
    """The last ``keep`` bytes of ``pattern`` repeated up to ``size`` bytes, then ``end``."""
    body = keep - len(end)
    start = (size - body) % len(pattern)
    return (pattern * (body // len(pattern) + 2))[start : start + body] + end


def octal(data: bytes) -> str:
    """``data`` as a printf format of octal escapes (no byte of it appears in the command)."""
    return "".join(f"\\{b:03o}" for b in data)


@pytest.mark.timeout(900)
def test_a_gibibyte_on_each_stream_keeps_memory_bounded(
    rcli: Cli, pools: Pools, figure: Figure
) -> None:
    out, err = b"0123456789abcdef\n", b"fedcba9876543210\n"
    pool = pools.start(1)
    wait_for(lambda: rcli.json("status")["workers"], what="the pool")
    rcli.run("enqueue", "--id", "warm-up", "echo warm")  # the pool's usual work, for a baseline
    wait_for(lambda: rcli.json("show", "warm-up")["state"] == "completed", what="warm-up")
    before = status_kib(pool.pid, "VmHWM")
    rcli.run(
        "enqueue",
        "--raw",
        "--id",
        "loud",
        f"{{ yes {out.decode().strip()} | head -c {GIB}; printf END-OUT; }} & "
        f"{{ yes {err.decode().strip()} | head -c {GIB}; printf END-ERR; }} >&2; wait",
    )
    wait_for(lambda: rcli.json("show", "loud")["state"] == "completed", timeout=600)
    peak = status_kib(pool.pid, "VmHWM")
    assert pools.terminate_all() == [0]

    logs = subprocess.run([QUEUECTL, "logs", "loud"], env=rcli.env, capture_output=True)
    assert logs.stdout == stream_tail(out, GIB, b"END-OUT", KEEP)
    assert logs.stderr == stream_tail(err, GIB, b"END-ERR", KEEP)
    # 2 GiB went through the pool; it holds two 64 KiB tails and 64 KiB read buffers.
    assert peak - before < 64 * 1024, f"peak RSS grew from {before} to {peak} KiB"
    figure(
        f"1 GiB on stdout and 1 GiB on stderr: pool peak RSS (VmHWM) {before / 1024:.1f} MiB "
        f"before, {peak / 1024:.1f} MiB after; stored tails {len(logs.stdout)} + "
        f"{len(logs.stderr)} bytes, the exact end of each stream"
    )


def test_binary_output_round_trips_through_logs_and_json(rcli: Cli) -> None:
    every_byte = bytes(range(256))
    invalid_utf8 = b"\xff\xfe\xc3(\xed\xa0\x80 \xf0\x28\x8c\x28 ok \xe2\x82\xac"
    rcli.run(
        "enqueue",
        "--id",
        "bin",
        "--max-retries",
        "0",
        f"printf '{octal(every_byte)}'; printf '{octal(invalid_utf8)}' >&2; exit 1",
    )
    rcli.run("worker", "run", "--until-empty", timeout=120)

    raw = subprocess.run([QUEUECTL, "logs", "bin"], env=rcli.env, capture_output=True)
    assert raw.returncode == 0
    assert (raw.stdout, raw.stderr) == (every_byte, invalid_utf8)
    for payload in (rcli.json("logs", "bin"), rcli.json("show", "bin")["history"][0]):
        assert payload["stdout"].encode("utf-8", "surrogateescape") == every_byte
        assert payload["stderr"].encode("utf-8", "surrogateescape") == invalid_utf8
    assert rcli.json("show", "bin")["state"] == "dead"  # a failed run keeps its output too
