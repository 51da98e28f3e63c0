"""Split deployment: gateway B (`serve --upstream A`) relays to model service A, two processes.

A serves the double's models (`scripted` is its default). B gets the same
models file and default: B fills a missing `model` with *its* default before
forwarding, so a B without the table would send `local` to A. The client must
see the same bytes from B as from one in-process server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .conftest import Process, RunningServer, models_file
from .sse_client import Received, events_of, post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "你是一个客服助手，负责回答订单问题。", "type": "optimize"}
# Keys that might be set in the developer's environment would change which models
# are usable in the processes (which inherit it) but not in-process: blank them.
NO_KEYS = {"DASHSCOPE_API_KEY": "", "OPENAI_API_KEY": "", "SCRIPTED_KEY": ""}


@dataclass
class Split:
    model_service: Process  # A
    gateway: Process        # B


@pytest.fixture
def split(tmp_path: Path, upstream: UpstreamDouble,
          processes: Callable[..., Process]) -> Iterator[Split]:
    env = {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
           "PROMPTCAST_DEFAULT_MODEL": "scripted", **NO_KEYS}
    a = processes([], env, tmp_path / "a.log")
    b = processes(["--upstream", a.url], env, tmp_path / "b.log")
    yield Split(a, b)


def normalised(got: Received) -> bytes:
    """The raw stream with its random stream id replaced."""
    stream_id = got.headers["x-stream-id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,32}", stream_id)
    return got.raw.replace(f"id: {stream_id}.".encode(), b"id: SID.")


def _burst() -> Script:
    """A model at full speed: 300 events in one chunk, 300 one a chunk with no gap (read
    many at a time), one event cut across two writes, then the end."""
    cut = event(chunk_json("切开"))
    return Script.raw(event(chunk_json("", role="assistant")),
                      b"".join(event(chunk_json(f"{i} ")) for i in range(300)),
                      *[event(chunk_json(f"{i} ")) for i in range(300, 600)],
                      cut[:25], cut[25:],
                      event(chunk_json(None, finish="stop")), b"data: [DONE]\n\n")


BURST_CONTENT = "".join(f"{i} " for i in range(600)) + "切开"

SCRIPTS = {
    "chat": lambda: Script.chat(["首先", "，", "明确", "角色\n和\r\n语气"], gap=0.01),
    "burst": _burst,
    "drop": lambda: Script.chat(["partial", " answer"], then="drop"),
    "error": lambda: Script.raw(event(chunk_json("ok")),
                                event(json.dumps({"error": {"message": "model overloaded"}})),
                                b"data: [DONE]\n\n"),
}


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_split_and_in_process_send_the_same_bytes(
    split: Split, server: RunningServer, upstream: UpstreamDouble, name: str
) -> None:
    upstream.enqueue(SCRIPTS[name]())
    direct = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    upstream.enqueue(SCRIPTS[name]())
    relayed = await post_stream(f"{split.gateway.url}/optimize-stream", PROMPT)

    # Both went to the double, with the same chat request (B filled the same default).
    assert len(upstream.requests) == 2
    assert upstream.requests[0].json() == upstream.requests[1].json()
    assert upstream.requests[1].json()["model"] == "scripted-upstream"

    assert relayed.status == direct.status == 200
    for header in ("content-type", "cache-control", "x-accel-buffering"):
        assert relayed.headers[header] == direct.headers[header]
    assert "content-length" not in relayed.headers
    assert relayed.headers["x-stream-id"] != direct.headers["x-stream-id"]
    assert relayed.data == direct.data
    assert [(e.event, e.data) for e in relayed.events] == [
        (e.event, e.data) for e in direct.events]
    assert normalised(relayed) == normalised(direct)
    if name == "chat":
        assert relayed.content == "首先，明确角色\n和\r\n语气"
        assert relayed.terminal.data == "[DONE]"
    elif name == "burst":
        assert relayed.content == BURST_CONTENT
        stream_id = relayed.headers["x-stream-id"]
        assert [e.id for e in relayed.events] == [
            f"{stream_id}.{n}" for n in range(1, len(relayed.events) + 1)]
        assert relayed.terminal.data == "[DONE]"
    else:
        assert relayed.terminal.event == "error"
        assert b"[DONE]" not in relayed.raw
        assert relayed.error()["code"] == ("upstream_closed" if name == "drop"
                                           else "upstream_error")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**PROMPT, "model": "gpt-9"}, 404, "model_not_found"),
        ({**PROMPT, "model": "keyed"}, 422, "model_unavailable"),
        ({**PROMPT, "model": "qwen-max"}, 422, "model_unavailable"),
        ({**PROMPT, "type": "translate"}, 422, "invalid_request"),
    ],
)
async def test_errors_before_the_first_byte_reach_the_client_unchanged(
    split: Split, server: RunningServer, upstream: UpstreamDouble,
    body: dict[str, str], status: int, code: str,
) -> None:
    relayed = await post_stream(f"{split.gateway.url}/optimize-stream", body)
    from_a = await post_stream(f"{split.model_service.url}/prompt/optimize-prompt", body)
    direct = await post_stream(f"{server.url}/optimize-stream", body)
    assert relayed.status == from_a.status == direct.status == status
    assert relayed.headers["content-type"] == "application/json"
    assert relayed.body == from_a.body == direct.body
    assert relayed.body["error"]["code"] == code
    if code != "invalid_request":
        assert relayed.body["error"]["field"] == "model"
    assert upstream.requests == []


async def test_unknown_model_lists_what_the_model_service_has(split: Split) -> None:
    got = await post_stream(f"{split.gateway.url}/optimize-stream",
                            {**PROMPT, "model": "gpt-9"})
    assert got.status == 404
    message = got.body["error"]["message"]
    assert "gpt-9" in message and "scripted" in message and "local" in message
    assert "keyed" not in message


async def test_model_service_dying_mid_stream_is_an_error_frame(
    split: Split, upstream: UpstreamDouble
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["one", gate, "two"]))
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "POST", f"{split.gateway.url}/optimize-stream", json=PROMPT
    ) as response:
        assert response.status_code == 200
        events = []
        async with aclosing(events_of(response)) as stream:
            async for ev in stream:
                events.append(ev)
                if "one" in ev.data:
                    split.model_service.proc.kill()
                    split.model_service.proc.wait(10)
    assert [e.event for e in events[:-1]] == ["message"] * (len(events) - 1)
    terminal = events[-1]
    assert terminal.event == "error"
    error = json.loads(terminal.data)
    assert error["code"] == "upstream_closed"
    assert "dropped" in error["message"]
    assert all(e.data != "[DONE]" for e in events)
    gate.set()


async def test_client_disconnect_at_the_gateway_cancels_the_upstream(
    split: Split, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "POST", f"{split.gateway.url}/optimize-stream", json=PROMPT
    ) as response:
        seen = 0
        async with aclosing(events_of(response)) as stream:
            async for ev in stream:
                if "tok" in ev.data:
                    seen += 1
                if seen == 3:
                    break
    # B cancels its request to A, A cancels its request to the double.
    assert upstream.wait_for(lambda: upstream.client_closed == 1, 1.5)
    assert upstream.wait_for(lambda: upstream.open_connections == 0, 1.0)
    assert upstream.completed == 0


async def test_model_service_down_is_a_502(split: Split, upstream: UpstreamDouble) -> None:
    split.model_service.proc.terminate()
    split.model_service.proc.wait(10)
    got = await post_stream(f"{split.gateway.url}/optimize-stream", PROMPT)
    assert got.status == 502
    assert got.headers["content-type"] == "application/json"
    error = got.body["error"]
    assert error["code"] == "upstream_unreachable"
    assert "cannot reach the model service" in error["message"]
    assert upstream.requests == []
