"""Log lines as an operator reads them: one per request and one per stream, each with its
request id, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from promptcast.ops.logs import (
    configure,
    log_stream,
    request_id_var,
)
from promptcast.relay.stats import Outcome, StreamStats

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


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """`logs.configure`'s setup, writing to a buffer; the root logger restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    configure("info")
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def test_a_stream_is_one_json_line_with_its_request_id(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1764770400.0429)
    token = request_id_var.set("req-7")
    try:
        log_stream(StreamStats("s-1", first_event_after=0.0123, duration=1.5, chunks=7,
                               outcome=Outcome.DONE, completion_tokens=12),
                   model="local", mode="optimize", request_id="req-7", path="/x")
    finally:
        request_id_var.reset(token)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764770400))
    assert configured.getvalue() == (
        f"{stamp},042 INFO promptcast.stream [req-7] "  # milliseconds cut, not rounded
        '{"event":"stream","path":"/x","stream":"s-1","request_id":"req-7","model":"local",'
        '"mode":"optimize","ttft_ms":12.3,"duration_ms":1500.0,"chunks":7,"outcome":"done",'
        '"completion_tokens":12}\n')


def test_the_timestamp_changes_with_the_second(configured: io.StringIO) -> None:
    # The formatter renders each second once: a record of the next second must not
    # reuse the last one's text.
    logger = logging.getLogger("promptcast.test")
    for created, msecs in ((1764770400.999, 999.0), (1764770401.001, 1.0)):
        logger.handle(logging.makeLogRecord({"name": "promptcast.test", "msg": "x",
                                             "levelno": logging.INFO, "levelname": "INFO",
                                             "created": created, "msecs": msecs}))
    first, second = configured.getvalue().splitlines()
    assert first[:23] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764770400)) + ",999"
    assert second[:23] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764770401)) + ",001"
