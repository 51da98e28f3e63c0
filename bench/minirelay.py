"""A minimal SSE relay in Python: what the relay's hot path costs with nothing else in it.

Not promptcast and not for production: a yardstick for `bench.run --reference`.
It does what promptcast's split gateway does on the hot path, the way nginx
does it: asyncio protocols on uvloop on both sides (no tasks, no ASGI, no HTTP
client library), httptools' C parser for the upstream's response, a keep-alive
pool of upstream connections, and per upstream read: split the complete SSE
events, re-frame each as `id: <sid>.<n>\\ndata: <payload>\\n\\n`, and write all
of them to the client in one chunked-encoding write. Flow control: a client
that stops reading pauses the upstream. No timeouts, heartbeats, validation,
logging or error frames: it shows the floor, not a product.

    python -m bench.minirelay --port 9400 --upstream 127.0.0.1:9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
from collections import deque

import httptools

from .common import check_loopback

_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
         b"Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n")


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: deque[Upstream] = deque()
        self.loop = asyncio.get_running_loop()

    def relay(self, client: Client, body: bytes) -> None:
        while self.idle:
            upstream = self.idle.pop()
            if not upstream.closed:
                upstream.start(client, body)
                return
        self.loop.create_task(self._connect(client, body))

    async def _connect(self, client: Client, body: bytes) -> None:
        try:
            _, upstream = await self.loop.create_connection(lambda: Upstream(self), self.host,
                                                            self.port)
        except OSError:
            client.fail(b"502 Bad Gateway")
            return
        upstream.start(client, body)


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.client: Client | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, client: Client, body: bytes) -> None:
        assert self.transport is not None
        self.client = client
        client.upstream = self
        self.buf = b""
        self.transport.write(
            b"POST /prompt/optimize-prompt HTTP/1.1\r\nHost: model\r\n"
            b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if client.paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._drop()

    def on_headers_complete(self) -> None:
        client = self.client
        if client is None:
            return
        if self.parser.get_status_code() != 200:
            client.fail(b"502 Bad Gateway")
            self._drop()
            return
        client.transport.write(_HEAD)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is None:
            return
        buf = self.buf + body if self.buf else body
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.buf = buf
            return
        self.buf = buf[end + 2:]
        frames = []
        prefix = client.prefix
        for block in buf[:end].split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                client.seq += 1
                frames.append(b"%s%d\ndata: %s\n\n" % (prefix, client.seq, block[6:]))
            elif block:
                client.seq += 1
                lines = [b"id: %s%d" % (prefix[4:], client.seq)]
                lines += [line for line in block.split(b"\n") if not line.startswith(b"id:")]
                frames.append(b"\n".join(lines) + b"\n\n")
        if frames:
            payload = b"".join(frames)
            client.transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def on_message_complete(self) -> None:
        client = self.client
        self.client = None
        if client is not None:
            client.upstream = None
            client.finish()
        if not self.closed:
            self.pool.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client = self.client
        self.client = None
        if client is not None:
            client.upstream = None
            client.abort()

    def _drop(self) -> None:
        self.closed = True
        self.client = None
        if self.transport is not None:
            self.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.buffer = bytearray()
        self.upstream: Upstream | None = None
        self.paused = False
        self.busy = False
        self.seq = 0
        self.prefix = b""
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._request()

    def _request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        self.busy = True
        self.seq = 0
        self.prefix = b"id: %s." % secrets.token_urlsafe(9).encode()
        self.pool.relay(self, body)

    def finish(self) -> None:
        self.transport.write(b"0\r\n\r\n")
        self.busy = False
        if self.buffer:
            self._request()

    def fail(self, status: bytes) -> None:
        self.transport.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                             % status)
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def pause_writing(self) -> None:
        self.paused = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream._drop()


async def serve(port: int, upstream: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    loop = asyncio.get_running_loop()
    pool = Pool(host, int(up_port))
    server = await loop.create_server(lambda: Client(pool), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the model service")
    args = parser.parse_args()
    check_loopback(args.upstream.rpartition(":")[0])
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
