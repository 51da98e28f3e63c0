"""uvicorn's protocol with the door below ASGI (`server/protocol.py`, `server/door.py`).

Under `promptcast serve` (and the `serve` fixture) stream starts take the door
and streams write to the connection directly; these tests pin what both must
keep from the ASGI app and its `send`: the same bytes, the app's answers for
anything else, a slow reader holding the upstream back instead of filling
memory, a reader that never reads being given up on — and the overrides of
uvicorn's protocol, on the release pyproject.toml pins.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httptools
import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from promptcast.ops.logs import _RequestIdFilter
from promptcast.relay.relay import Relay
from promptcast.server.channels import DirectChannel, Exchange
from promptcast.server.protocol import HttpProtocol

from .conftest import RunningServer
from .sse_client import events_of, post_stream
from .test_split import SCRIPTS, normalised
from .upstream_double import Script, UpstreamDouble, chunk_json, event, wait_until

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
    sinks: list[str] = []
    run = Relay.run

    async def counted(self: Relay, sink: Any, *args: Any) -> Any:
        sinks.append(type(sink).__name__)
        return await run(self, sink, *args)

    monkeypatch.setattr(Relay, "run", counted)
    upstream.enqueue(MORE_SCRIPTS[name]())
    direct = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert sinks == ["ChannelSink"]

    # The app's route, on a server that offers no channel: everything through `send`.
    monkeypatch.setattr("promptcast.server.door.Door.claims", lambda self, path: False)
    monkeypatch.setattr("promptcast.server.streaming.channel_of", lambda scope: None)
    upstream.enqueue(MORE_SCRIPTS[name]())
    via_send = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert sinks == ["ChannelSink", "SendSink"]
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
    write, end = DirectChannel.write, Exchange.end

    def recorded_write(self: DirectChannel, frame: bytes) -> bool:
        direct_writes.append(frame)
        return write(self, frame)

    def recorded_end(self: Exchange, last: bytes = b"") -> None:
        bodies.append((last, False))
        end(self, last)

    monkeypatch.setattr(DirectChannel, "write", recorded_write)
    monkeypatch.setattr(Exchange, "end", recorded_end)
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


# -- stream starts served below ASGI (`Exchange`, `door.Door`) ---------------------


class _Responses:
    """Every response read off one connection, in order: (status, headers, body)."""

    def __init__(self) -> None:
        self.done: list[tuple[int, dict[str, str], bytes]] = []
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, part: bytes) -> None:
        self._body.extend(part)

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers, bytes(self._body)))
        self._headers, self._body = {}, bytearray()


def _post(path: str, body: bytes, *extra: bytes, version: bytes = b"1.1") -> bytes:
    return (b"POST %s HTTP/%s\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), version, b"".join(h + b"\r\n" for h in extra), len(body), body))


def _talk(server: RunningServer, *requests: bytes, responses: int,
          pieces: int = 1) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send `requests` (each in `pieces` writes) on one connection; read `responses`.

    Also says whether the server closed the connection after the last one.
    """
    host, port = server.url.removeprefix("http://").split(":")
    got = _Responses()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        for request in requests:
            step = -(-len(request) // pieces)
            for at in range(0, len(request), step):
                sock.sendall(request[at:at + step])
        while len(got.done) < responses:
            data = sock.recv(1 << 16)
            assert data, f"the server closed the connection after {len(got.done)} responses"
            got.parser.feed_data(data)
        sock.settimeout(0.5)  # a kept-alive connection stays open: nothing more comes
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return got.done, closed


def _body(**fields: Any) -> bytes:
    return json.dumps({**PROMPT, **fields}).encode()


@pytest.fixture
def asgi_cycles(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request the ASGI app was given, as uvicorn's request cycles."""
    made: list[Any] = []
    init = RequestResponseCycle.__init__

    def recorded(self: RequestResponseCycle, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(RequestResponseCycle, "__init__", recorded)
    return made


def _content(body: bytes) -> str:
    return "".join(e.get("content") or "" for e in _deltas(body))


def _deltas(body: bytes) -> list[dict[str, Any]]:
    return [choice.get("delta") or {} for line in body.split(b"\n")
            if line.startswith(b"data: {")
            for choice in json.loads(line[6:]).get("choices") or []]


def test_a_plain_stream_start_skips_the_asgi_app_and_writes_what_it_would(
        server: RunningServer, upstream: UpstreamDouble, asgi_cycles: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    upstream.enqueue(Script.chat(["你好", "，世界"]))
    [(status, headers, body)], _ = _talk(server, _post("/optimize-stream", _body()), responses=1)
    assert not asgi_cycles
    # The same request through the app, for comparison.
    monkeypatch.setattr("promptcast.server.door.Door.claims", lambda self, path: False)
    upstream.enqueue(Script.chat(["你好", "，世界"]))
    [(asgi_status, asgi_headers, asgi_body)], _ = _talk(
        server, _post("/optimize-stream", _body()), responses=1)
    assert len(asgi_cycles) == 1
    assert status == asgi_status == 200
    ids = ("x-stream-id", "x-request-id", "date")
    assert {k: v for k, v in headers.items() if k not in ids} == {
        k: v for k, v in asgi_headers.items() if k not in ids}
    assert headers["transfer-encoding"] == "chunked"
    assert body.replace(headers["x-stream-id"].encode(), b"SID") == asgi_body.replace(
        asgi_headers["x-stream-id"].encode(), b"SID")
    assert _content(body) == "你好，世界"


def test_the_request_id_and_the_stream_line_are_the_apps(
        server: RunningServer, upstream: UpstreamDouble,
        caplog: pytest.LogCaptureFixture) -> None:
    upstream.enqueue(Script.chat(["hi"]))
    # What puts the request id on every line of the server's log.
    caplog.handler.addFilter(_RequestIdFilter())
    with caplog.at_level("INFO"):
        # Sent twice: the first one is the request's, as the app takes it.
        [(status, headers, _)], _ = _talk(
            server, _post("/optimize-stream", _body(), b"X-Request-ID: trace-42",
                          b"X-Request-ID: trace-43"), responses=1)
        assert wait_until(lambda: any("trace-42" in r.getMessage() for r in caplog.records))
    assert status == 200 and headers["x-request-id"] == "trace-42"
    [line] = [r for r in caplog.records if r.name == "promptcast.stream"]
    record = json.loads(line.getMessage())
    assert record["request_id"] == "trace-42" and record["path"] == "/optimize-stream"
    assert record["outcome"] == "done" and getattr(line, "request_id", None) == "trace-42"
    assert not [r for r in caplog.records if r.name == "promptcast.access"]


@pytest.mark.parametrize(("request_", "status", "code"), [
    (_post("/optimize-stream", b"{not json"), 400, "invalid_json"),
    (_post("/optimize-stream", _body(prompt="   ")), 422, "invalid_request"),
    (_post("/optimize-stream", _body(stream=False)), 422, "invalid_request"),
    (_post("/optimize-stream", _body(), b"Idempotency-Key: " + b"k" * 300), 422,
     "invalid_request"),
    (_post("/optimize-stream", _body()).replace(b"application/json", b"text/plain"), 415,
     "unsupported_media_type"),
], ids=["bad json", "blank prompt", "not a stream", "bad idempotency key", "not json"])
def test_what_is_not_a_plain_stream_start_is_answered_by_the_app(
        server: RunningServer, asgi_cycles: list[Any], request_: bytes, status: int,
        code: str) -> None:
    # Sent in pieces, so the body is kept over several reads first.
    [(got, headers, body)], closed = _talk(server, request_, responses=1, pieces=3)
    assert (got, json.loads(body)["error"]["code"]) == (status, code)
    assert len(asgi_cycles) == 1 and headers["x-request-id"] and not closed


def test_a_body_over_the_limit_goes_to_the_app_whole_and_is_refused(
        serve: Callable[..., RunningServer], asgi_cycles: list[Any]) -> None:
    server = serve(max_body_bytes=2000)
    request = _post("/optimize-stream", _body(prompt="x" * 5000))
    [(status, _, body)], _ = _talk(server, request, responses=1, pieces=6)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert len(asgi_cycles) == 1


def test_a_resumable_start_and_the_one_json_answer_go_through_the_app(
        server: RunningServer, upstream: UpstreamDouble, asgi_cycles: list[Any]) -> None:
    upstream.enqueue(Script.chat(["a", "b"]), Script.chat(["c", "d"]))
    [(status, headers, body)], _ = _talk(
        server, _post("/optimize-stream", _body(resumable=True)), responses=1)
    assert status == 200 and _content(body) == "ab" and len(asgi_cycles) == 1
    [(status, headers, body)], _ = _talk(
        server, _post("/prompt/optimize-prompt", _body(stream=False)), responses=1)
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["choices"][0]["message"]["content"] == "cd"
    assert len(asgi_cycles) == 2


def test_an_error_before_the_stream_is_our_json_error(
        server: RunningServer, upstream: UpstreamDouble, asgi_cycles: list[Any]) -> None:
    upstream.enqueue(Script.error(429, "slow down", retry_after="7"))
    [(status, headers, body)], closed = _talk(
        server, _post("/optimize-stream", _body()), responses=1)
    assert status == 429 and headers["retry-after"] == "7"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["error"]["code"] == "upstream_rate_limited"
    assert not asgi_cycles and not closed


def test_pipelined_requests_are_answered_in_order_on_a_kept_alive_connection(
        server: RunningServer, upstream: UpstreamDouble, asgi_cycles: list[Any]) -> None:
    upstream.enqueue(Script.chat(["one"], gap=0.05), Script.chat(["two"]))
    requests = (_post("/optimize-stream", _body()), _post("/optimize-stream", b"{"),
                _post("/v1/chat/completions", json.dumps({
                    "model": "scripted", "stream": True,
                    "messages": [{"role": "user", "content": "x"}]}).encode()))
    # All three in one write: the second and third arrive while the first
    # streams, and wait in uvicorn's queue; the app takes them from there.
    responses, closed = _talk(server, b"".join(requests), responses=3)
    assert [status for status, _, _ in responses] == [200, 400, 200]
    assert _content(responses[0][2]) == "one" and _content(responses[2][2]) == "two"
    assert responses[2][2].rstrip().endswith(b"data: [DONE]")
    assert len(asgi_cycles) == 2 and not closed


def test_http_1_0_and_connection_close_end_the_connection_with_the_stream(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["a"]), Script.chat(["b"]))
    [(status, headers, body)], closed = _talk(
        server, _post("/optimize-stream", _body(), b"Connection: close"), responses=1)
    assert status == 200 and headers["connection"] == "close" and closed
    assert _content(body) == "a"
    [(status, headers, body)], closed = _talk(
        server, _post("/optimize-stream", _body(), version=b"1.0"), responses=1)
    assert status == 200 and closed and _content(body) == "b"


def test_with_keys_a_known_key_streams_and_any_other_is_refused_by_the_app(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble,
        asgi_cycles: list[Any]) -> None:
    server = serve(api_keys="key-one,key-two")
    upstream.enqueue(Script.chat(["ok"]))
    [(status, _, body)], _ = _talk(
        server, _post("/optimize-stream", _body(), b"Authorization: Bearer key-two"),
        responses=1)
    assert status == 200 and _content(body) == "ok" and not asgi_cycles
    for header, expected in ((b"Authorization: Bearer key-three", 403), (b"X-No: key", 401)):
        [(status, _, _)], _ = _talk(server, _post("/optimize-stream", _body(), header),
                                    responses=1)
        assert status == expected
    assert len(asgi_cycles) == 2


def test_with_rate_limits_on_every_start_goes_through_the_app(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble,
        asgi_cycles: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    server = serve(rate_limit_per_minute=1)
    upstream.enqueue(Script.chat(["ok"]))
    with caplog.at_level("INFO"):
        first, second = (_talk(server, _post("/optimize-stream", _body()), responses=1)[0][0]
                         for _ in range(2))
    assert (first[0], second[0]) == (200, 429) and len(asgi_cycles) == 2
    # One record for the stream, even though the key middleware copies the scope.
    assert [r.getMessage().count('"path":"/optimize-stream"') for r in caplog.records
            if r.name == "promptcast.stream"] == [1]
    assert not [r for r in caplog.records
                if r.name == "promptcast.access" and " 200 " in r.getMessage()]


def test_a_failure_in_the_route_before_the_response_is_a_500(
        server: RunningServer, upstream: UpstreamDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("no ids today")

    monkeypatch.setattr("promptcast.ids.stream_id", broken)
    upstream.enqueue(Script.chat(["x"]))
    [(status, _, body)], closed = _talk(
        server, _post("/optimize-stream", _body()), responses=1)
    assert (status, body) == (500, b"Internal Server Error") and closed
    assert upstream.wait_for(lambda: upstream.client_closed + upstream.completed == 1, 5)


def test_a_client_that_leaves_mid_stream_stops_the_upstream(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["first", gate, "never"]))
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_post("/optimize-stream", _body()))
        seen = b""
        while b"first" not in seen:
            seen += sock.recv(1 << 16)
    assert upstream.wait_for(lambda: upstream.client_closed == 1, 5)
    gate.set()


def test_a_body_announced_over_the_limit_is_refused_before_it_comes(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(max_body_bytes=2000)
    request = _post("/optimize-stream", _body()).replace(
        b"Content-Length: %d" % len(_body()), b"Content-Length: 10000000")
    # Only the head and a little of the body: the answer must not wait for the rest.
    [(status, _, body)], _ = _talk(server, request, responses=1)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def _live(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_a_client_that_leaves_before_its_body_is_in_leaves_nothing_behind(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["warm"]))
    _talk(server, _post("/optimize-stream", _body()), responses=1)
    # Its stream ends in the server a moment after its last bytes reached us.
    assert wait_until(lambda: gc.collect() >= 0 and _live(Exchange) == 0)
    gc.disable()  # what is left must be freed by reference counting alone
    try:
        protocols, exchanges = _live(HttpProtocol), _live(Exchange)
        host, port = server.url.removeprefix("http://").split(":")
        for _ in range(10):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(_post("/optimize-stream", _body())[:-5])
                assert wait_until(lambda: _live(Exchange) > exchanges)
        # No more than before: one an earlier test left closing may go meanwhile.
        assert wait_until(lambda: _live(HttpProtocol) <= protocols and _live(Exchange) <= exchanges)
    finally:
        gc.enable()


def test_chat_errors_are_counted_under_the_model_asked_for(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.error(429, "slow down"))
    chat = json.dumps({"stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    [(status, _, _)], _ = _talk(server, _post("/v1/chat/completions", chat), responses=1)
    assert status == 429
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    # No model in the request: counted as the app counts it, under "".
    assert re.search(r'promptcast_errors_total\{[^}]*model=""[^}]*\} 1', metrics), metrics


# -- the door stands in only for the middleware it mirrors ----------------------------


class _Seen:
    """Plain ASGI middleware that notes every HTTP request it is given."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def test_a_middleware_added_to_the_app_sees_every_stream_start(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble,
        asgi_cycles: list[Any]) -> None:
    seen: list[str] = []

    def setup(app: Any) -> Any:
        app.add_middleware(_Seen, seen=seen)
        return app

    server = serve(setup=setup)
    upstream.enqueue(Script.chat(["a"]))
    [(status, _, body)], _ = _talk(server, _post("/optimize-stream", _body()), responses=1)
    assert status == 200 and _content(body) == "a"
    assert seen == ["POST /optimize-stream"] and len(asgi_cycles) == 1


def test_a_middleware_around_the_app_sees_every_stream_start(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    seen: list[str] = []
    server = serve(setup=lambda app: _Seen(app, seen))
    upstream.enqueue(Script.chat(["a"]))
    [(status, _, _)], _ = _talk(server, _post("/optimize-stream", _body()), responses=1)
    assert status == 200 and seen == ["POST /optimize-stream"]


def test_without_other_middleware_the_door_takes_the_start(
        server: RunningServer, upstream: UpstreamDouble, asgi_cycles: list[Any]) -> None:
    # The counterpart of the two tests above: they show something only if this holds.
    upstream.enqueue(Script.chat(["a"]))
    [(status, _, _)], _ = _talk(server, _post("/optimize-stream", _body()), responses=1)
    assert status == 200 and not asgi_cycles


# -- the fence around uvicorn ---------------------------------------------------------


def test_uvicorn_is_the_release_the_protocol_is_written_for() -> None:
    import tomllib
    from pathlib import Path

    import uvicorn

    from promptcast.server import protocol

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    [pin] = [d for d in pyproject["project"]["dependencies"] if d.startswith("uvicorn")]
    minor = protocol.SUPPORTED.rstrip(".")
    assert pin.endswith(f">={minor},<{minor.rsplit('.', 1)[0]}.{int(minor.rsplit('.', 1)[1]) + 1}")
    assert protocol.supported(), f"uvicorn {uvicorn.__version__}: re-check the overrides"


def test_the_overridden_methods_are_uvicorns_own_and_called_as_uvicorn_calls_them() -> None:
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for name in ("__init__", "on_headers_complete", "on_body", "on_message_complete",
                 "connection_lost", "pause_writing", "resume_writing"):
        ours, theirs = getattr(HttpProtocol, name), getattr(HttpToolsProtocol, name)
        assert name in vars(HttpProtocol) and name in vars(HttpToolsProtocol), name
        assert inspect.signature(ours) == inspect.signature(theirs), name


def test_the_protocol_has_what_the_door_reads_of_uvicorns() -> None:
    # The attributes the overrides read or set on uvicorn's protocol and request
    # cycle, as uvicorn's own code sets them up for a connection and a request.
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    async def build() -> tuple[HttpProtocol, RequestResponseCycle]:
        config = uvicorn.Config(app, log_level="warning")
        protocol = HttpProtocol(config, ServerState(), {})
        cycle = RequestResponseCycle(
            scope={}, transport=None, flow=None, logger=None,  # type: ignore[arg-type]
            access_logger=None, access_log=False, default_headers=[],  # type: ignore[arg-type]
            message_event=asyncio.Event(), expect_100_continue=False, keep_alive=True,
            on_response=lambda: None)
        return protocol, cycle

    protocol, cycle = asyncio.run(build())
    protocol.on_message_begin()  # a request begins: uvicorn makes its url, headers, scope
    for name in ("parser", "url", "headers", "cycle", "flow", "transport", "scope", "app",
                 "root_path", "limit_concurrency", "expect_100_continue", "tasks", "loop",
                 "server_state", "config"):
        assert hasattr(protocol, name), name
    assert hasattr(protocol.config, "reset_contextvars")
    assert hasattr(protocol.server_state, "default_headers")
    for name in ("body", "more_body", "message_event", "response_complete", "response_started",
                 "chunked_encoding", "transport", "flow", "scope", "disconnected", "keep_alive"):
        assert hasattr(cycle, name), name


def test_another_uvicorn_release_runs_uvicorns_own_protocol(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import uvicorn

    from promptcast.server import protocol

    assert protocol.http_protocol() is HttpProtocol
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    with caplog.at_level("WARNING", "promptcast.door"):
        assert protocol.http_protocol() == "httptools"
    assert "0.99.0" in caplog.text
