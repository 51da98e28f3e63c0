"""The httpx transport: pausing stops reading the socket, proxies (plain and CONNECT), and
closing. What both transports share is in test_transport.py."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from promptcast.wire.httpx_transport import HttpxTransport
from promptcast.wire.transport import ConnectFailed, HTTPClientError

from .conftest import RunningServer, free_port
from .forward_proxy import ForwardProxy
from .test_http_client import certificate, raw_server, read_request
from .test_protocol import MB, _big_script, _open, _read_body
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

__all__ = ["certificate"]  # a fixture, used by name


async def test_a_paused_response_stops_reading_and_the_upstream_is_held_back(
    upstream: UpstreamDouble,
) -> None:
    chunks = 3000
    upstream.enqueue(_big_script(chunks, 30 * 1024))
    transport = HttpxTransport()
    response = await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                       headers={}, body=b"{}")
    got = bytearray()
    ended = asyncio.Event()
    pausing = True

    def on_bodies(batch: list[bytes]) -> None:
        got.extend(b"".join(batch))
        if pausing:
            response.pause_reading()  # after the first chunk, and until the test resumes

    response.deliver(on_bodies, lambda error: ended.set(), lambda: None)
    try:
        assert await upstream.until(lambda: upstream.written >= 2 * MB, 10)
        # Not reading: the sockets' buffers bound how far the upstream gets.
        assert not await upstream.until(lambda: upstream.written >= 40 * MB, 2), (
            f"the upstream wrote {upstream.written / MB:.0f} MB to a paused reader")
        assert upstream.completed == 0
        held = len(got)
        assert held < 2 * MB  # one read's worth, handed over before the pause

        pausing = False
        response.resume_reading()
        await asyncio.wait_for(ended.wait(), 60)
    finally:
        await response.aclose()
        await transport.aclose()
    assert upstream.completed == 1
    indices = [int(i) for i in re.findall(rb"<(\d{5})>", got)]
    assert indices == list(range(chunks))


def test_the_relay_holds_the_upstream_back_through_httpx(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble,
) -> None:
    server = serve({"PROMPTCAST_UPSTREAM_TRANSPORT": "httpx"})
    chunks = 3000
    upstream.enqueue(_big_script(chunks, 30 * 1024))
    sock = _open(server)
    try:
        assert upstream.wait_for(lambda: upstream.written >= 4 * MB, 10)
        assert not upstream.wait_for(lambda: upstream.written >= 40 * MB, 2), (
            f"the upstream wrote {upstream.written / MB:.0f} MB to a client that read nothing")
        status, body = _read_body(sock)
    finally:
        sock.close()
    assert status == 200
    assert upstream.requests[0].headers["user-agent"].startswith("python-httpx/")
    indices = [int(i) for i in re.findall(rb"<(\d{5})>", body)]
    assert indices == list(range(chunks))
    assert body.endswith(b"data: [DONE]\n\n")


async def test_closing_the_transport_stops_a_paused_reader_and_its_connection(
    upstream: UpstreamDouble,
) -> None:
    upstream.enqueue(Script.chat(["a", "b"], then="hang"))
    transport = HttpxTransport()
    response = await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                       headers={}, body=b"{}")
    ends: list[object] = []
    response.deliver(lambda batch: response.pause_reading(), ends.append, lambda: None)
    await upstream.until(lambda: upstream.written > 0)
    await asyncio.wait_for(transport.aclose(), 10)
    assert await upstream.until(lambda: upstream.client_closed == 1)
    assert ends == []  # stopped, not ended: the owner is shutting down


async def test_the_environment_is_not_read(
    upstream: UpstreamDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx would use these by itself; promptcast's settings alone choose the proxy.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    transport = HttpxTransport()
    try:
        response = await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                           headers={}, body=b"{}")
        assert b"data: [DONE]" in await response.read(1 << 20)
    finally:
        await transport.aclose()


async def test_a_proxy_that_cannot_be_reached_is_connect_failed(
    upstream: UpstreamDouble,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    transport = HttpxTransport(proxy_for=lambda url: dead)
    try:
        with pytest.raises(ConnectFailed):
            await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                    headers={}, body=b"{}")
    finally:
        await transport.aclose()
    assert upstream.requests == []


async def test_each_url_goes_through_the_proxy_named_for_it(
    upstream: UpstreamDouble, forward_proxy: ForwardProxy,
) -> None:
    proxied = f"{upstream.base_url}/chat/completions"
    direct = f"http://localhost:{upstream.port}/v1/chat/completions"
    transport = HttpxTransport(proxy_for=lambda url: forward_proxy.url if url == proxied
                               else None)
    try:
        for url in (proxied, direct, proxied):
            response = await transport.request("POST", url, headers={}, body=b"{}")
            assert b"data: [DONE]" in await response.read(1 << 20)
    finally:
        await transport.aclose()
    assert forward_proxy.seen == [f"POST {proxied}"] * 2
    assert len(upstream.requests) == 3


async def test_https_goes_through_a_connect_tunnel_and_verifies_the_server(
    certificate: tuple[Path, Path], forward_proxy: ForwardProxy,
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6\r\nsecure\r\n0\r\n\r\n")
        await writer.drain()

    async with raw_server(handler, tls=server_tls) as server:
        url = f"https://localhost:{server.port}/v1/chat/completions"
        trusting = HttpxTransport(proxy_for=lambda url: forward_proxy.url,
                                  ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            response = await trusting.request("POST", url, headers={}, body=b"{}")
            assert await response.read(100) == b"secure"
        finally:
            await trusting.aclose()
        default = HttpxTransport(proxy_for=lambda url: forward_proxy.url)
        try:
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await default.request("POST", url, headers={}, body=b"{}")
        finally:
            await default.aclose()
    assert forward_proxy.seen == [f"CONNECT localhost:{server.port}"] * 2


async def test_a_listener_that_raises_ends_the_stream_once(upstream: UpstreamDouble) -> None:
    transport = HttpxTransport()
    response = await transport.request("POST", f"{upstream.base_url}/chat/completions",
                                       headers={}, body=b"{}")
    ends: list[object] = []
    ended = asyncio.Event()

    def broken(batch: list[bytes]) -> None:
        raise RuntimeError("a bug in the listener")

    def on_end(error: object) -> None:
        ends.append(error)
        ended.set()

    response.deliver(broken, on_end, lambda: None)
    try:
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        await response.aclose()
        await transport.aclose()
    [error] = ends
    assert isinstance(error, HTTPClientError) and "callback failed" in str(error)
