"""Soak: 10,000 streams through one process in waves; no memory or file-descriptor leak."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Process, models_file
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

WAVES = 10
PER_WAVE = 1000
CONCURRENCY = 200


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def one_stream(port: int, body: bytes) -> bool:
    """POST, read to the end of the chunked body; True if it ended with [DONE]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /optimize-stream HTTP/1.1\r\nHost: soak\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        received = await reader.read()  # until the server closes
        return received.startswith(b"HTTP/1.1 200") and b"data: [DONE]\n\n" in received
    finally:
        writer.close()
        await writer.wait_closed()


async def wave(port: int, count: int) -> int:
    body = json.dumps({"prompt": "soak"}).encode()
    limit = asyncio.Semaphore(CONCURRENCY)

    async def bounded() -> bool:
        async with limit:
            return await one_stream(port, body)

    results = await asyncio.gather(*(bounded() for _ in range(count)))
    return sum(results)


async def test_ten_thousand_streams_leave_no_leak(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    upstream.default = Script.chat(["a", "b", "c"])
    server = processes([], {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
                            "PROMPTCAST_DEFAULT_MODEL": "scripted",
                            "PROMPTCAST_LOG_LEVEL": "warning"}, tmp_path / "server.log")
    port = int(server.url.rsplit(":", 1)[1])
    pid = server.proc.pid
    fds_before = open_fds(pid)
    assert await wave(port, PER_WAVE) == PER_WAVE
    rss_first = rss_kb(pid)
    completed = PER_WAVE
    history = [rss_first]
    for _ in range(WAVES - 1):
        completed += await wave(port, PER_WAVE)
        history.append(rss_kb(pid))
    rss_last = history[-1]
    print("\nRSS after each wave (KB):", history)
    assert completed == WAVES * PER_WAVE
    assert await upstream.until(lambda: upstream.open_connections == 0, 5.0)
    growth = (rss_last - rss_first) / rss_first
    slope = (history[-1] - history[-6]) / history[-6] / 5
    print(f"\nsoak: {completed} streams; RSS after wave 1 {rss_first} KB, after wave {WAVES} "
          f"{rss_last} KB ({growth:+.1%}; {slope:+.2%} per wave over the last five); "
          f"fds {fds_before} -> {open_fds(pid)}")
    assert growth < 0.10, f"RSS grew {growth:.1%} between the first and the last wave"
    assert slope < 0.01, f"RSS still grows {slope:.2%} per wave"
    assert open_fds(pid) <= fds_before + 2, "file descriptors were left open"
