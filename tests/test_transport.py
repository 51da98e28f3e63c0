"""The upstream transport seam: both implementations against real sockets, the choice the
settings make, and the relay's bytes through each (directly and through a forward proxy)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from promptcast.settings import Settings
from promptcast.wire.choose import choose_transport
from promptcast.wire.http_client import HTTPClient
from promptcast.wire.httpx_transport import HttpxTransport
from promptcast.wire.transport import (
    BodyIncomplete,
    ConnectFailed,
    Headers,
    HTTPClientError,
    ProxyRouting,
    Transport,
)

from .conftest import RunningServer, models_file, start_server
from .forward_proxy import ForwardProxy
from .sse_client import Received, post_stream
from .test_http_client import raw_server, read_request
from .test_split import SCRIPTS, normalised
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "你是一个客服助手，负责回答订单问题。", "type": "optimize"}


@pytest.fixture(params=["builtin", "httpx"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """Each implementation of the seam in turn."""
    made: Transport = HTTPClient() if request.param == "builtin" else HttpxTransport()
    yield made
    await made.aclose()


async def body_of(transport: Transport, url: str) -> tuple[int, bytes]:
    response = await transport.request("POST", url, headers={}, body=b"{}")
    data = b"".join([chunk async for chunk in response])
    await response.aclose()
    return response.status, data


# -- Headers -------------------------------------------------------------------------

def test_headers_give_the_first_value_and_keep_every_one() -> None:
    headers = Headers.of([("set-cookie", "a=1"), ("content-type", "text/event-stream"),
                       ("set-cookie", "b=2"), ("set-cookie", "c=3")])
    assert headers["set-cookie"] == "a=1"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2", "c=3"]
    assert headers.get_all("content-type") == ["text/event-stream"]
    assert headers.get_all("retry-after") == []
    assert headers == {"set-cookie": "a=1", "content-type": "text/event-stream"}


# -- both implementations, one contract ----------------------------------------------

@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
    ],
    ids=["content-length", "chunked", "until-close"],
)
async def test_bodies_in_each_framing(transport: Transport, answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(len(answer)):  # one byte at a time: everything split across reads
            writer.write(answer[i:i + 1])
            await writer.drain()
        if b"Connection: close" in answer:
            writer.close()

    async with raw_server(handler) as server:
        assert await body_of(transport, f"http://127.0.0.1:{server.port}/x") == (
            200, b"hello world")


async def test_repeated_headers_are_all_kept(transport: Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
                     b"Set-Cookie: a=1\r\nWarning: 199 - first\r\nSet-Cookie: b=2\r\n"
                     b"Warning: 199 - second\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(handler) as server:
        response = await transport.request("GET", f"http://127.0.0.1:{server.port}/",
                                           headers={})
        await response.aclose()
    assert response.status == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["set-cookie"] == "a=1"
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert response.headers.get_all("warning") == ["199 - first", "199 - second"]


async def test_an_error_body_is_read_up_to_its_limit(transport: Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 26\r\n\r\n"
                     b"abcdefghijklmnopqrstuvwxyz")
        await writer.drain()

    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})
        assert await response.read(10) == b"abcdefghij"


async def test_a_drop_mid_body_is_body_incomplete(transport: Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        writer.transport.abort()

    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})
        with pytest.raises(BodyIncomplete):
            async for _ in response:
                pass
        await response.aclose()


async def test_a_refused_connection_is_connect_failed(transport: Transport) -> None:
    async with raw_server(read_request) as server:  # type: ignore[arg-type]
        port = server.port
    with pytest.raises(ConnectFailed):
        await transport.request("POST", f"http://127.0.0.1:{port}/", headers={})


async def test_not_an_http_url_is_an_http_client_error(transport: Transport) -> None:
    with pytest.raises(HTTPClientError, match="not an http"):
        await transport.request("POST", "ftp://127.0.0.1/x", headers={})


class Listener:
    """Records push-mode callbacks in order; can pause on the first chunk or close."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.chunks: list[bytes] = []
        self.ended = asyncio.Event()
        self.error: object = None

    def on_bodies(self, batch: list[bytes]) -> None:
        self.chunks += batch
        self.calls.append("bodies")

    def on_read(self) -> None:
        self.calls.append("read")

    def on_end(self, error: HTTPClientError | None) -> None:
        self.calls.append("end")
        self.error = error
        self.ended.set()


def _chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)


async def test_push_hands_over_every_chunk_in_order_then_the_end(transport: Transport) -> None:
    chunks = [b"data: %d\n\n" % i for i in range(300)]
    listening = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await listening.wait()
        for i in range(0, 300, 30):
            writer.write(_chunked(*chunks[i:i + 30]))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    listener = Listener()
    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})
        response.deliver(listener.on_bodies, listener.on_end, listener.on_read)
        listening.set()
        await asyncio.wait_for(listener.ended.wait(), 10)
        response.close()
    assert b"".join(listener.chunks) == b"".join(chunks)
    assert listener.error is None
    assert listener.calls[0] == "read"  # the one `deliver` makes itself
    assert listener.calls[-2:] == ["read", "end"]  # the end after every read's chunks
    assert listener.calls.count("end") == 1


async def test_push_ends_with_the_error_when_the_upstream_drops(transport: Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(_chunked(b"data: 1\n\n"))
        await writer.drain()
        writer.transport.abort()

    listener = Listener()
    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})
        response.deliver(listener.on_bodies, listener.on_end, listener.on_read)
        await asyncio.wait_for(listener.ended.wait(), 10)
        response.close()
    assert isinstance(listener.error, BodyIncomplete)
    assert b"".join(listener.chunks) == b"data: 1\n\n"


async def test_a_listener_that_closes_the_response_hears_no_more(transport: Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(_chunked(b"data: 1\n\n"))
        await writer.drain()
        await reader.read(1)  # the client hangs up
        closed.set()

    closed = asyncio.Event()
    calls: list[object] = []
    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})

        def on_bodies(batch: list[bytes]) -> None:
            calls.append(list(batch))
            response.close()  # as a relay does when the stream ends inside a read

        response.deliver(on_bodies, lambda error: calls.append(("end", error)),
                         lambda: calls.append("read"))
        await asyncio.wait_for(closed.wait(), 10)  # the close reached the upstream
    # The chunk came before `deliver` (handed over inside it) or after its own `read`;
    # either way nothing follows the close: no read, no end.
    assert calls in ([[b"data: 1\n\n"]], ["read", [b"data: 1\n\n"]])


async def test_a_paused_response_hands_over_nothing_until_resumed(transport: Transport) -> None:
    # Megabytes, all written at once: always more to read, in many reads.
    chunks = [b"data: %05d %s\n\n" % (i, b"x" * 1000) for i in range(8000)]
    body = _chunked(*chunks) + b"0\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await writer.drain()
        await reader.read()

    got: list[bytes] = []
    while_paused: list[bytes] = []
    paused = False
    pauses = 0
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()

    async with raw_server(handler) as server:
        response = await transport.request("POST", f"http://127.0.0.1:{server.port}/",
                                           headers={})

        def resume() -> None:
            nonlocal paused
            paused = False
            response.resume_reading()

        def on_bodies(batch: list[bytes]) -> None:
            nonlocal paused, pauses
            (while_paused if paused else got).extend(batch)
            if not paused and pauses < 20:
                # A client that cannot keep up: pause, and resume a little later.
                paused = True
                pauses += 1
                response.pause_reading()
                loop.call_later(0.005, resume)

        response.deliver(on_bodies, lambda error: ended.set(), lambda: None)
        await asyncio.wait_for(ended.wait(), 30)
        response.close()
    assert while_paused == []
    assert pauses == 20
    assert b"".join(got) == b"".join(chunks)


@pytest.mark.parametrize("mode", ["pull", "push"])
async def test_closing_a_response_mid_body_closes_the_upstream_connection(
    transport: Transport, upstream: UpstreamDouble, mode: str,
) -> None:
    upstream.enqueue(Script.chat(["first"], then="hang"))
    response = await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                       headers={"Content-Type": "application/json"}, body=b"{}")
    if mode == "pull":
        async for chunk in response:
            assert chunk.startswith(b"data: ")
            break
    else:
        listener = Listener()
        response.deliver(listener.on_bodies, listener.on_end, listener.on_read)
        await upstream.until(lambda: upstream.written > 0)
    await response.aclose()
    assert await upstream.until(lambda: upstream.client_closed == 1)
    assert await upstream.until(lambda: upstream.open_connections == 0)


# -- the choice the settings make ----------------------------------------------------

def settings_with(**env: str) -> Settings:
    return Settings.from_env(env)


async def test_without_a_proxy_auto_is_the_builtin_client() -> None:
    chosen = choose_transport(settings_with())
    assert isinstance(chosen, HTTPClient)
    await chosen.aclose()


async def test_the_setting_forces_either_implementation() -> None:
    forced = choose_transport(settings_with(PROMPTCAST_UPSTREAM_TRANSPORT="httpx"))
    assert isinstance(forced, HttpxTransport)
    await forced.aclose()


async def test_builtin_with_a_proxy_set_warns_that_it_goes_direct(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="promptcast.transport"):
        chosen = choose_transport(settings_with(
            PROMPTCAST_UPSTREAM_TRANSPORT="builtin",
            HTTPS_PROXY="http://user:hunter22@proxy.corp:3128"))
    assert isinstance(chosen, HTTPClient)
    assert "not through the configured proxy (http://proxy.corp:3128)" in caplog.text
    assert "hunter22" not in caplog.text
    await chosen.aclose()


async def test_auto_with_a_proxy_routes_each_upstream_by_no_proxy() -> None:
    chosen = choose_transport(settings_with(HTTPS_PROXY="http://proxy.corp:3128",
                                            NO_PROXY="internal.corp"))
    assert isinstance(chosen, ProxyRouting)
    assert isinstance(chosen.route("https://api.openai.com/v1/chat/completions"),
                      HttpxTransport)
    assert isinstance(chosen.route("https://llm.internal.corp/v1/chat/completions"),
                      HTTPClient)
    # No proxy for http:// URLs was set: those go direct, on the built-in client.
    assert isinstance(chosen.route("http://127.0.0.1:8000/v1/chat/completions"), HTTPClient)
    await chosen.aclose()


# -- the relay's bytes through each transport, and through a forward proxy ------------

def _server(tmp_path: Path, upstream: UpstreamDouble, servers: list[RunningServer],
            env: dict[str, str], **overrides: object) -> RunningServer:
    models = models_file(tmp_path, upstream, near={
        "provider": "openai", "base_url": f"http://localhost:{upstream.port}/v1",
        "model": "near"})
    server = start_server(Settings.from_env(
        {"PROMPTCAST_MODELS_FILE": str(models), "PROMPTCAST_DEFAULT_MODEL": "scripted", **env},
        **overrides))
    servers.append(server)
    return server


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.parametrize("kind", ["auto", "httpx"])
async def test_the_provider_streams_through_a_forward_proxy_and_no_proxy_bypasses_it(
    tmp_path: Path, upstream: UpstreamDouble, forward_proxy: ForwardProxy,
    servers: list[RunningServer], kind: str,
) -> None:
    server = _server(tmp_path, upstream, servers, {
        "HTTP_PROXY": forward_proxy.url, "NO_PROXY": "localhost",
        "PROMPTCAST_UPSTREAM_TRANSPORT": kind})
    upstream.enqueue(Script.chat(["经", "代理"]))
    proxied = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert proxied.content == "经代理" and proxied.terminal.data == "[DONE]"
    assert forward_proxy.seen == [f"POST {upstream.base_url}/chat/completions"]

    upstream.enqueue(Script.chat(["直", "连"]))
    direct = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "near"})
    assert direct.content == "直连" and direct.terminal.data == "[DONE]"
    assert len(forward_proxy.seen) == 1  # localhost is in NO_PROXY: not through the proxy
    assert [seen.json()["model"] for seen in upstream.requests] == ["scripted-upstream", "near"]
    # httpx names itself; the built-in client (what `auto` keeps for a bypassed host) does not.
    agents = [seen.headers.get("user-agent", "") for seen in upstream.requests]
    assert agents[0].startswith("python-httpx/")
    assert agents[1].startswith("python-httpx/") is (kind == "httpx")


TRANSPORTS = {
    "builtin": {"PROMPTCAST_UPSTREAM_TRANSPORT": "builtin"},
    "httpx": {"PROMPTCAST_UPSTREAM_TRANSPORT": "httpx"},
    "httpx through a proxy": {"HTTP_PROXY": "{proxy}"},
}


async def _through_each_transport(
    start: Callable[[dict[str, str]], RunningServer], upstream: UpstreamDouble,
    forward_proxy: ForwardProxy, script: Callable[[], Script], body: dict[str, object],
) -> dict[str, Received]:
    got = {}
    for name, env in TRANSPORTS.items():
        server = start({k: v.format(proxy=forward_proxy.url) for k, v in env.items()})
        upstream.enqueue(script())
        got[name] = await post_stream(f"{server.url}/optimize-stream", body)
    assert len(forward_proxy.seen) == 1
    return got


def _same(got: dict[str, Received]) -> None:
    first = got["builtin"]
    assert first.status == 200
    for name, other in got.items():
        assert other.status == first.status, name
        for header in ("content-type", "cache-control", "x-accel-buffering"):
            assert other.headers[header] == first.headers[header], name
        assert normalised(other) == normalised(first), name


@pytest.mark.parametrize("resumable", [False, True], ids=["plain", "resumable"])
@pytest.mark.parametrize("script", list(SCRIPTS))
async def test_the_client_gets_the_same_bytes_whichever_transport(
    tmp_path: Path, upstream: UpstreamDouble, forward_proxy: ForwardProxy,
    servers: list[RunningServer], script: str, resumable: bool,
) -> None:
    got = await _through_each_transport(
        lambda env: _server(tmp_path, upstream, servers, env), upstream, forward_proxy,
        SCRIPTS[script], {**PROMPT, "resumable": resumable})
    _same(got)
    agents = [seen.headers.get("user-agent", "") for seen in upstream.requests]
    assert [agent.startswith("python-httpx/") for agent in agents] == [False, True, True]


@pytest.mark.parametrize("script", ["chat", "burst", "drop"])
async def test_a_split_gateway_sends_the_same_bytes_whichever_transport(
    tmp_path: Path, upstream: UpstreamDouble, forward_proxy: ForwardProxy,
    servers: list[RunningServer], script: str,
) -> None:
    model_service = _server(tmp_path, upstream, servers, {})
    got = await _through_each_transport(
        lambda env: _server(tmp_path, upstream, servers, env,
                            upstream_url=model_service.url),
        upstream, forward_proxy, SCRIPTS[script], PROMPT)
    _same(got)
    assert forward_proxy.seen == [f"POST {model_service.url}/prompt/optimize-prompt"]
