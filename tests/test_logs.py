"""Log lines as an operator reads them: one per request and one per stream, each with its
request id, and never a secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Process, models_file
from .sse_client import post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio


async def test_request_id_on_every_line_forwarded_and_no_secret_logged(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    key = "sk-test-LOGSECRET-0123456789"
    server = processes([], {
        "PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
        "PROMPTCAST_DEFAULT_MODEL": "keyed", "SCRIPTED_KEY": key,
    }, tmp_path / "server.log")
    upstream.enqueue(
        Script.chat(["hello"]),
        Script.raw(event(chunk_json("x")),
                   event(json.dumps({"error": {"message": f"key {key} refused"}}))),
        Script.error(401, f"Incorrect API key provided: {key}"),
    )
    ok = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"},
                           headers={"X-Request-ID": "req-abc-123"})
    assert ok.headers["x-request-id"] == "req-abc-123"
    assert upstream.requests[-1].headers["x-request-id"] == "req-abc-123"
    mid = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"},
                            headers={"X-Request-ID": "req-mid"})
    before = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"})
    assert mid.terminal.event == "error" and before.status == 502
    generated = before.headers["x-request-id"]
    assert len(generated) == 16

    server.proc.terminate()
    server.proc.wait(10)
    lines = server.output().splitlines()
    mine = [line for line in lines if "[req-abc-123]" in line]
    # A stream's one line is its own: it says all the access line would.
    assert not any("promptcast.access" in line for line in mine)
    stream_lines = [line for line in mine if "promptcast.stream" in line]
    assert len(stream_lines) == 1
    record = json.loads(stream_lines[0].split("] ", 1)[1])
    assert record["outcome"] == "done" and record["request_id"] == "req-abc-123"
    assert record["path"] == "/optimize-stream" and record["duration_ms"] >= 0
    assert record["model"] == "keyed" and record["chunks"] >= 1
    assert any(f"[{generated}]" in line and " 502 " in line for line in lines)
    assert key not in server.output()
    assert "LOGSECRET" not in server.output()
