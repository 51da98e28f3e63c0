"""Upstream faults and hostile clients: each ends the right way, within its limit, leaking nothing.

(Faults already pinned in test_api.py: refused connection, 401/429/500/503, a
non-SSE 200, silence before the first token, stalls, drops, truncation,
malformed JSON, mid-stream error objects, a reader that never reads, and a
client leaving before the first byte or mid-stream.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptcast.settings import Settings

from .conftest import Process, RunningServer, models_file, start_server
from .sse_client import post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "You are a support bot."}


async def test_an_event_over_the_size_cap_ends_the_stream(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(max_event_bytes=1024 * 1024)
    huge = b"data: " + b'{"x":"' + b"a" * (1024 * 1024 + 10) + b'"}\n\n'
    upstream.enqueue(Script.raw(event(chunk_json("ok")), huge, b"data: [DONE]\n\n"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.event == "error"
    assert got.error()["code"] == "bad_upstream_stream"
    assert "max_line_bytes=1048576" in got.error()["message"]
    assert "[DONE]" not in got.data
    assert await upstream.until(lambda: upstream.open_connections == 0, 1.0)


async def test_invalid_utf8_ends_the_stream_instead_of_passing_garbage(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    bad = b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n'
    upstream.enqueue(Script.raw(event(chunk_json("ok")), bad, b"data: [DONE]\n\n"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.content == "ok"
    assert got.terminal.event == "error"
    assert got.error()["code"] == "bad_upstream_stream"
    assert "not valid UTF-8" in got.error()["message"]
    assert "\ufffd".encode() not in got.raw


async def test_upstream_403_is_a_502_that_names_the_model(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.error(403, "this key may not use that model"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 502
    assert got.body["error"]["code"] == "upstream_forbidden"
    assert "'scripted'" in got.body["error"]["message"]


def fallback_server(tmp_path: Path, upstream: UpstreamDouble, **overrides: object
                    ) -> RunningServer:
    path = models_file(tmp_path, upstream)
    path.write_text(path.read_text() + '\n[models."primary"]\nprovider = "openai"\n'
                    f'base_url = "{upstream.base_url}"\nfallbacks = ["scripted"]\n')
    return start_server(Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path)}, **overrides))


async def test_no_fallback_once_the_first_byte_is_sent(
    tmp_path: Path, upstream: UpstreamDouble
) -> None:
    server = fallback_server(tmp_path, upstream)
    try:
        upstream.enqueue(Script.chat(["partial"], then="drop"))
        got = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "primary"})
    finally:
        server.stop()
    assert got.content == "partial" and got.terminal.event == "error"
    # One upstream request: the fallback was not started after the first byte.
    assert len(upstream.requests) == 1


async def test_fallback_after_a_503_and_a_disconnect_during_it(
    tmp_path: Path, upstream: UpstreamDouble
) -> None:
    server = fallback_server(tmp_path, upstream)
    try:
        upstream.enqueue(Script.error(503, "busy"), Script.chat(["from", " fallback"]))
        got = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "primary"})
        assert got.content == "from fallback"
        assert [r.json()["model"] for r in upstream.requests] == ["primary", "scripted-upstream"]

        # The primary fails, the fallback is slow to answer, the client leaves meanwhile.
        upstream.enqueue(Script.error(503, "busy"), Script(first_delay=60))
        async with httpx.AsyncClient(timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(f"{server.url}/optimize-stream",
                                  json={**PROMPT, "model": "primary"})
        assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)
        assert await upstream.until(lambda: upstream.open_connections == 0, 1.0)
    finally:
        server.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_slow_reader_applies_backpressure_and_memory_stays_bounded(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    server = processes([], {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
                            "PROMPTCAST_DEFAULT_MODEL": "scripted",
                            "PROMPTCAST_IDLE_TIMEOUT": "60"}, tmp_path / "server.log")
    big = "y" * 64_000
    upstream.enqueue(Script.chat([big] * 800))  # ~51 MB offered
    before = rss_kb(server.proc.pid)
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(PROMPT).encode()
    writer.write(b"POST /optimize-stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    # Read a little, then stop reading: socket buffers fill up on every hop.
    await reader.read(100_000)
    await asyncio.sleep(2)  # give the pipeline time to fill what it can
    grown_mb = (rss_kb(server.proc.pid) - before) / 1024
    assert upstream.completed == 0, "the relay kept reading while its client did not"
    assert grown_mb < 20, f"the server buffered {grown_mb:.0f} MB for a stalled reader"
    writer.close()
    assert await upstream.until(lambda: upstream.client_closed == 1, 2.0)
