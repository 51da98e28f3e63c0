"""The hot-path HTTP client against a raw HTTP server on loopback: framing, reuse, drops,
flow control and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from promptcast.wire.http_client import BodyIncomplete, ConnectFailed, HTTPClient
from promptcast.wire.http_connection import _HIGH_WATER

from .connections import close_fully

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None
                     ) -> AsyncIterator[RawServer]:
    state = RawServer(0)
    serving: set[asyncio.Task[object]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        task = asyncio.current_task()
        assert task is not None
        serving.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await close_fully(writer)
            serving.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
    # Connections still served (a client that never left) end with the test's
    # loop, not after it.
    for task in list(serving):
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)


async def body_of(client: HTTPClient, url: str) -> tuple[int, bytes]:
    response = await client.request("POST", url, headers={}, body=b"{}")
    data = b"".join([chunk async for chunk in response])
    await response.aclose()
    return response.status, data


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
async def test_bodies_in_each_framing(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # One byte at a time: headers and chunk sizes split across reads.
        for i in range(len(answer)):
            writer.write(answer[i:i + 1])
            await writer.drain()
        if b"Connection: close" in answer:
            writer.close()

    async with raw_server(handler) as server:
        client = HTTPClient()
        assert await body_of(client, f"http://127.0.0.1:{server.port}/x") == (200, b"hello world")
        await client.aclose()


async def test_request_on_the_wire_and_keep_alive_reuse() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            server.requests.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(handler) as server:
        client = HTTPClient()
        url = f"http://127.0.0.1:{server.port}/v1/chat?x=1"
        response = await client.request("POST", url, headers={"Authorization": "Bearer k"},
                                        body=b'{"a":1}')
        assert response.headers == {"content-length": "2"}
        assert b"".join([c async for c in response]) == b"ok"
        assert await body_of(client, url) == (200, b"ok")
        await client.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Authorization: Bearer k\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')


async def test_a_response_given_up_midway_closes_its_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            return

    async with raw_server(handler) as server:
        client = HTTPClient()
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(2):
            response = await client.request("POST", url, headers={})
            async for chunk in response:
                assert chunk == b"abc"
                break
            await response.aclose()
        await client.aclose()
    assert server.connections == 2


async def test_a_drop_mid_body_is_an_error_not_an_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        writer.transport.abort()

    async with raw_server(handler) as server:
        client = HTTPClient()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", headers={})
        with pytest.raises(BodyIncomplete):
            async for _ in response:
                pass
        await client.aclose()


async def test_a_stale_kept_alive_connection_is_retried_a_fresh_one_never() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        server.requests.append(request)
        if b"/close-after" in request:
            # Answer, keep-alive promised, then close: the next request on this
            # connection finds it dead before any answer.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            return
        if b"/die" in request:
            writer.transport.abort()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
        await writer.drain()

    async with raw_server(handler) as server:
        client = HTTPClient()
        base = f"http://127.0.0.1:{server.port}"
        assert await body_of(client, f"{base}/close-after") == (200, b"ok")
        await asyncio.sleep(0.05)  # let the server's close reach the client
        assert await body_of(client, f"{base}/again") == (200, b"fresh")
        with pytest.raises(BodyIncomplete):
            await client.request("POST", f"{base}/die", headers={})
        await client.aclose()
    # /die reached the server once: a fresh connection that fails is not retried.
    assert [r.split(b" ")[1] for r in server.requests] == [b"/close-after", b"/again", b"/die"]


async def test_flow_control_keeps_the_buffer_bounded() -> None:
    big = b"x" * 65536

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(big) * 200))
        for _ in range(200):
            writer.write(big)
            await writer.drain()

    async with raw_server(handler) as server:
        client = HTTPClient()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", headers={})
        received = 0
        peak = 0
        async for chunk in response:
            received += len(chunk)
            peak = max(peak, response.buffered)
            await asyncio.sleep(0.001)  # a slow consumer
        await client.aclose()
    assert received == len(big) * 200
    assert peak <= _HIGH_WATER + 2 * len(big), peak


async def test_refused_connection_is_connect_failed() -> None:
    async with raw_server(read_request) as server:  # type: ignore[arg-type]
        port = server.port
    client = HTTPClient()
    with pytest.raises(ConnectFailed, match="ConnectionRefusedError"):
        await client.request("POST", f"http://127.0.0.1:{port}/", headers={})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_tls_verifies_the_server(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"6\r\nsecure\r\n0\r\n\r\n")
        await writer.drain()

    async with raw_server(handler, tls=server_tls) as server:
        trusting = HTTPClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
        url = f"https://localhost:{server.port}/"
        assert await body_of(trusting, url) == (200, b"secure")
        await trusting.aclose()
        default = HTTPClient()
        with pytest.raises(ConnectFailed, match="SSL"):
            await default.request("POST", url, headers={})
        await default.aclose()


async def test_a_reads_chunks_are_pushed_together_and_before_the_end() -> None:
    chunks = [b"data: %d\n\n" % i for i in range(200)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    sent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await sent.wait()  # the listener is in place
        writer.write(body)  # 200 chunks, then the end: the client reads them together
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)  # the connection stays for reuse

    calls: list[object] = []
    ended = asyncio.Event()
    async with raw_server(handler) as server:
        client = HTTPClient()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/",
                                         headers={}, body=b"{}")

        def on_end(error: object) -> None:
            calls.append(("end", error))
            ended.set()

        response.deliver(lambda batch: calls.append(list(batch)),
                         on_end, lambda: calls.append("read"))
        sent.set()
        await asyncio.wait_for(ended.wait(), 5)
        response.close()
        await client.aclose()
    batches = [c for c in calls if isinstance(c, list)]
    assert [c for batch in batches for c in batch] == chunks  # whole, in order
    assert len(batches) < len(chunks) / 10  # a read's chunks in one call, not one each
    assert calls[-1] == ("end", None) and calls[-2] == "read"  # the end comes after them all


async def test_a_listener_that_closes_the_response_in_a_read_hears_no_more() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the listener is in place
        writer.write(b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    calls: list[object] = []
    async with raw_server(handler) as server:
        client = HTTPClient()
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/",
                                         headers={}, body=b"{}")

        def on_bodies(batch: list[bytes]) -> None:
            calls.append(list(batch))
            response.close()  # as a relay does when the stream ends inside a read

        response.deliver(on_bodies, lambda error: calls.append(("end", error)),
                         lambda: calls.append("read"))
        await asyncio.sleep(0.3)
        await client.aclose()
    # `deliver` calls `on_read` once itself; after the close, no `read` and no end.
    assert calls == ["read", [b"data: 1\n\n", b"data: 2\n\n"]]


# -- every resolved address, repeated headers ---------------------------------------

def resolver_of(table: dict[str, list[str]], asked: list[str]
                ) -> Callable[[str, int], Awaitable[list[str]]]:
    """A name service that answers from `table` (getaddrinfo cannot be pointed at it)."""
    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(table[host])
    return resolve


async def test_a_name_whose_first_address_refuses_connects_to_the_next() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    asked: list[str] = []
    late: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        late.append(1)
        writer.close()

    # The server listens on 127.0.0.1 only: 127.0.0.2 (loopback too) refuses its port.
    async with raw_server(handler) as server:
        client = HTTPClient(resolver=resolver_of(
            {"upstream.test": ["127.0.0.2", "127.0.0.1"]}, asked))
        url = f"http://upstream.test:{server.port}/v1"
        assert await body_of(client, url) == (200, b"ok")
        # Now 127.0.0.2 would answer too; but the address that answered comes first now.
        second = await asyncio.start_server(count, "127.0.0.2", server.port)
        async with second:
            busy = await client.request("POST", url, headers={})  # the kept-alive one
            assert await body_of(client, url) == (200, b"ok")  # a new connection
            await busy.aclose()
        await client.aclose()
        assert server.connections == 2
    assert late == []
    assert asked == ["upstream.test"]  # resolved once, kept for a minute


async def test_when_every_address_refuses_each_is_named() -> None:
    async with raw_server(read_request) as server:  # type: ignore[arg-type]
        port = server.port
    client = HTTPClient(resolver=resolver_of(
        {"upstream.test": ["127.0.0.2", "127.0.0.3", "127.0.0.1"]}, []))
    with pytest.raises(ConnectFailed) as info:
        await client.request("POST", f"http://upstream.test:{port}/", headers={})
    assert str(info.value) == ("3 addresses tried: ConnectionRefusedError, "
                               "ConnectionRefusedError, ConnectionRefusedError")


async def test_a_name_with_no_address_is_connect_failed() -> None:
    client = HTTPClient(resolver=resolver_of({"upstream.test": []}, []))
    with pytest.raises(ConnectFailed):
        await client.request("POST", "http://upstream.test:9/", headers={})


async def test_the_system_resolver_is_used_by_default() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with raw_server(handler) as server:
        client = HTTPClient()
        assert await body_of(client, f"http://localhost:{server.port}/") == (200, b"ok")
        await client.aclose()


async def test_repeated_response_headers_are_kept_and_a_lookup_gives_the_first() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        answer = (b"HTTP/1.1 200 OK\r\nLink: <a>; rel=x\r\nContent-Length: 0\r\n"
                  b"Link: <b>; rel=y\r\n\r\n")
        for i in range(len(answer)):  # a byte at a time: names and values cut across reads
            writer.write(answer[i:i + 1])
            await writer.drain()

    async with raw_server(handler) as server:
        client = HTTPClient()
        response = await client.request("GET", f"http://127.0.0.1:{server.port}/", headers={})
        await response.aclose()
        await client.aclose()
    assert response.headers["link"] == "<a>; rel=x"
    assert response.headers.get_all("link") == ["<a>; rel=x", "<b>; rel=y"]
