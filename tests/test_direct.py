"""The direct channel: events written from the upstream's read callback, with flow control.

Under `promptcast serve` (and the `serve` fixture) streams take the direct
path; these tests pin what it must keep from the ASGI `send` path: the same
bytes, a slow reader holding the upstream back instead of filling memory, and
a reader that never reads being given up on.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httptools
import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from promptcast.direct import DirectChannel
from promptcast.relay import Relay

from .conftest import RunningServer
from .sse_client import events_of, post_stream
from .test_split import SCRIPTS, normalised
from .upstream_double import Script, UpstreamDouble, chunk_json, event

MB = 1024 * 1024
PROMPT = {"prompt": "你是一个客服助手，负责回答订单问题。", "type": "optimize", "model": "scripted"}


def _request(server: RunningServer) -> bytes:
    body = json.dumps(PROMPT).encode()
    port = server.url.rsplit(":", 1)[1]
    return (b"POST /optimize-stream HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (port.encode(), len(body), body))


def _open(server: RunningServer) -> socket.socket:
    sock = socket.socket()
    # A small receive window, so what the client does not read stays on the server's side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    host, port = server.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.sendall(_request(server))
    return sock


def _read_body(sock: socket.socket) -> tuple[int, bytes]:
    """Read the response to its end: status and de-chunked body."""
    body = bytearray()
    done = False

    class Collect:
        def on_body(self, part: bytes) -> None:
            body.extend(part)

        def on_message_complete(self) -> None:
            nonlocal done
            done = True

    parser = httptools.HttpResponseParser(Collect())
    sock.settimeout(30)
    while not done:
        data = sock.recv(1 << 20)
        if not data:
            break
        parser.feed_data(data)
    return parser.get_status_code(), bytes(body)


def _big_script(chunks: int, size: int, then: str = "end") -> Script:
    # Each content piece starts with its index, so order and loss show.
    return Script.chat([f"<{i:05d}>" + "字" * (size // 3) for i in range(chunks)], then=then)


def test_a_reader_that_pauses_holds_the_upstream_back_and_loses_nothing(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    chunks, size = 4000, 30 * 1024
    upstream.enqueue(_big_script(chunks, size))
    sock = _open(server)
    try:
        # The upstream starts writing; with nobody reading downstream, the
        # gateway must stop reading it: the sockets' buffers bound how far it
        # gets (7.7 MB here; without flow control it writes 26 MB/s for as
        # long as it has anything to write).
        assert upstream.wait_for(lambda: upstream.written >= 4 * MB, 10)
        assert not upstream.wait_for(lambda: upstream.written >= 40 * MB, 3), (
            f"the upstream wrote {upstream.written / MB:.0f} MB to a client that read nothing"
        )
        assert upstream.completed == 0
        status, body = _read_body(sock)
    finally:
        sock.close()
    assert status == 200
    assert upstream.completed == 1
    indices = [int(i) for i in re.findall(rb"<(\d{5})>", body)]
    assert indices == list(range(chunks))
    assert body.endswith(b"data: [DONE]\n\n")


def test_a_reader_that_never_reads_is_given_up_on(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    server = serve(idle_timeout=1.0, heartbeat_interval=0.3)
    upstream.enqueue(_big_script(2000, 30 * 1024, then="hang"))
    sock = _open(server)
    try:
        assert upstream.wait_for(lambda: upstream.written >= 4 * MB, 10)
        # Paused upstream, no events: the idle limit ends the stream and closes it.
        assert upstream.wait_for(lambda: upstream.client_closed == 1, 10)
    finally:
        sock.close()


# A chunk's JSON split over two `data:` lines, arriving in one read with a plain
# one: the pass-through must not frame it as one line.
_SPLIT_JSON = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,'
               b'"delta":{"content":"y"},\ndata: "finish_reason":null}]}\n\n')
MORE_SCRIPTS = {
    **SCRIPTS,
    "multi-line data in one read": lambda: Script.raw(
        event(chunk_json("", role="assistant")),
        event(chunk_json("x")) + _SPLIT_JSON + event(chunk_json("z")),
        event(chunk_json(finish="stop")), b"data: [DONE]\n\n"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(MORE_SCRIPTS))
async def test_the_direct_path_writes_the_bytes_asgi_send_would(
        name: str, serve: Callable[..., RunningServer], upstream: UpstreamDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve()
    direct_runs: list[Any] = []
    run_direct = Relay.run_direct

    async def counted(self: Relay, *args: Any) -> Any:
        direct_runs.append(self)
        return await run_direct(self, *args)

    monkeypatch.setattr(Relay, "run_direct", counted)
    upstream.enqueue(MORE_SCRIPTS[name]())
    direct = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert len(direct_runs) == 1

    monkeypatch.setattr(Relay, "can_run_direct", lambda self: False)
    upstream.enqueue(MORE_SCRIPTS[name]())
    via_send = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert len(direct_runs) == 1
    assert normalised(direct) == normalised(via_send)
    assert direct.raw  # a stream, not an error


@pytest.mark.anyio
async def test_the_idle_limit_applies_from_the_first_event_on(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    # The timer was armed for the (later) first-token deadline; the first
    # event must bring it forward to the idle one.
    server = serve(idle_timeout=0.3, first_token_timeout=30.0)
    upstream.enqueue(Script.chat(["early", 20.0, "never"]))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.event == "timeout"
    assert "0.3 s" in got.error()["message"]
    assert got.content == "early"
    assert await upstream.until(lambda: upstream.client_closed == 1, 3.0)


@pytest.mark.anyio
async def test_events_that_arrive_together_leave_together_and_none_waits(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    gate = upstream.gate()
    together = b"".join(event(chunk_json(text)) for text in ("one ", "two ", "three"))
    upstream.enqueue(Script.raw(event(chunk_json("", role="assistant")), together, gate,
                                event(chunk_json(finish="stop")), b"data: [DONE]\n\n"))
    seen: list[str] = []
    raw = bytearray()
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
            "POST", f"{server.url}/optimize-stream", json=PROMPT) as response:
        async for got in events_of(response, raw):
            seen.append(got.data)
            if len(seen) == 4:
                # All three of the upstream's one write are here while it still
                # waits at the gate: nothing was held back for a later write.
                assert [json.loads(d)["choices"][0]["delta"]["content"] for d in seen[1:]] == [
                    "one ", "two ", "three"]
                gate.set()
    assert seen[-1] == "[DONE]"
    # Each event whole and in order, each with its own id.
    ids = re.findall(rb"^id: \S+\.(\d+)$", bytes(raw), re.MULTILINE)
    assert [int(i) for i in ids] == list(range(1, len(seen) + 1))


@pytest.mark.anyio
async def test_the_read_that_ends_the_stream_leaves_in_the_same_write_as_the_end(
        server: RunningServer, upstream: UpstreamDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What the server writes: event frames straight to the socket, and the
    # ASGI body messages (the last one carries the end of the body).
    direct_writes: list[bytes] = []
    bodies: list[tuple[bytes, bool]] = []
    write, send = DirectChannel.write, RequestResponseCycle.send

    def recorded_write(self: DirectChannel, frame: bytes) -> bool:
        direct_writes.append(frame)
        return write(self, frame)

    async def recorded_send(self: RequestResponseCycle, message: Any) -> None:
        if message["type"] == "http.response.body":
            bodies.append((message.get("body", b""), message.get("more_body", False)))
        await send(self, message)

    monkeypatch.setattr(DirectChannel, "write", recorded_write)
    monkeypatch.setattr(RequestResponseCycle, "send", recorded_send)
    gate = upstream.gate()
    upstream.enqueue(Script.raw(
        event(chunk_json("", role="assistant")), event(chunk_json("first ")), gate,
        event(chunk_json("last")) + event(chunk_json(finish="stop")) + b"data: [DONE]\n\n"))
    raw = bytearray()
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
            "POST", f"{server.url}/optimize-stream", json=PROMPT) as response:
        async for got in events_of(response, raw):
            if '"first "' in got.data:
                assert any(b'"first "' in frame for frame in direct_writes)
                gate.set()
    assert b'"last"' in raw and raw.rstrip().endswith(b"data: [DONE]")
    # The upstream's last read (content, finish, [DONE]) went out as one write
    # with the end of the body, not as frames written on their own first.
    assert not any(b'"last"' in frame or b"[DONE]" in frame for frame in direct_writes)
    last_body, more = bodies[-1]
    assert not more
    assert re.fullmatch(rb'id: \S+\ndata: \{.*"last".*\}\n\n'
                        rb'id: \S+\ndata: \{.*"finish_reason":"stop".*\}\n\n'
                        rb'id: \S+\ndata: \[DONE\]\n\n', last_body), last_body


@pytest.mark.anyio
async def test_usage_stays_out_unless_asked_for_on_the_direct_path(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    # `usage` ahead of `choices`, so the chunk ends as a plain one would.
    with_usage = {"usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3},
                  **json.loads(chunk_json("", role="assistant"))}
    upstream.enqueue(Script.raw(
        event(chunk_json("", role="assistant")),
        event(json.dumps(with_usage, separators=(",", ":"))),
        event(chunk_json("hi")), event(chunk_json(finish="stop")), b"data: [DONE]\n\n"))
    got = await post_stream(f"{server.url}/v1/chat/completions", {
        "model": "scripted", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert got.status == 200 and got.terminal.data == "[DONE]"
    assert b'"usage"' not in got.raw  # the client did not ask (no stream_options)
    assert got.content == "hi"
