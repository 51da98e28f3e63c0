"""An OpenAI-compatible upstream test double, fast enough never to be the bottleneck.

Raw asyncio protocols on uvloop, hand-written HTTP/1.1 (keep-alive, chunked
transfer encoding), timers instead of coroutines: a chunk costs one
`transport.write` and one timer.

    POST /v1/chat/completions      OpenAI shape (what an in-process gateway or LiteLLM calls)
    POST /prompt/optimize-prompt   the model service's route (split gateway, nginx)
    POST /optimize-stream          the same, so a direct run sends what relays get
    GET  /healthz, GET /stats

Each stream's shape (chunks, gap, first-byte delay, barrier) comes from a
`[bench n=50 gap=20 delay=0]` marker anywhere in the body, or from the URL
query (`?n=50&gap=20`); see `bench.common.StreamSpec`. Each content chunk is a
~180-byte `chat.completion.chunk` whose content carries `~kNNNNN~` (its
index); the last chunk has `finish_reason: "stop"` and `~eNNNNN~` (the
count); then `data: [DONE]`.

Bounded: loopback only, `--max-connections`, stream parameters capped, and the
process exits after `--lifetime` seconds.

    python -m bench.upstream --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from .common import MAX_HOLD_S, StreamSpec, check_loopback

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
_DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
_BATCH = 64  # chunks written per loop turn when there is no gap


def _chunk_template(stream_no: int, created: int) -> bytes:
    """A `%d`-template for one whole chunked-encoding frame of a content chunk."""
    body = (
        b'data: {"id":"chatcmpl-bench%010d","object":"chat.completion.chunk","created":%d,'
        b'"model":"bench","choices":[{"index":0,'
        b'"delta":{"content":" ~k%%05d~ token"},"finish_reason":null}]}\n\n'
        % (stream_no, created)
    )
    size = len(body % 0)
    return b"%x\r\n" % size + body + b"\r\n"


def _final_frame(stream_no: int, created: int, count: int) -> bytes:
    body = (
        b'data: {"id":"chatcmpl-bench%010d","object":"chat.completion.chunk","created":%d,'
        b'"model":"bench","choices":[{"index":0,'
        b'"delta":{"content":"~e%05d~"},"finish_reason":"stop"}]}\n\n'
        % (stream_no, created, count)
    )
    return b"%x\r\n%s\r\n" % (len(body), body)


def _plain(status: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status, ctype, len(body), body))


class Group:
    """Streams held open together until `size` of them are open (a barrier)."""

    __slots__ = ("deadline", "finished", "open", "peak", "released", "size", "streams",
                 "timer")

    def __init__(self, size: int, maxhold: float, loop: asyncio.AbstractEventLoop) -> None:
        self.size = size
        self.open = 0
        self.peak = 0
        self.released = False
        self.finished = False
        self.streams: set[Stream] = set()
        self.deadline = loop.time() + maxhold
        self.timer: asyncio.TimerHandle | None = None


class Server:
    def __init__(self, max_connections: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.max_connections = max_connections
        self.connections = 0
        self.streams_started = 0
        self.streams_done = 0
        self.streams_open = 0
        self.chunks = 0
        self.groups: dict[str, Group] = {}
        self.created = int(time.time())

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "streams_started": self.streams_started,
            "streams_done": self.streams_done, "streams_open": self.streams_open,
            "chunks": self.chunks,
            "groups": {k: {"size": g.size, "peak": g.peak, "released": g.released}
                       for k, g in list(self.groups.items())[-20:]},
        }

    def join(self, stream: Stream, spec: StreamSpec) -> Group:
        group = self.groups.get(spec.grp)
        if group is None:
            group = Group(spec.hold, min(spec.maxhold, MAX_HOLD_S), self.loop)
            group.timer = self.loop.call_at(group.deadline, self.release, group, 0.0)
            self.groups[spec.grp] = group
            if len(self.groups) > 1000:
                self.groups.pop(next(iter(self.groups)))
        group.open += 1
        group.streams.add(stream)
        group.peak = max(group.peak, group.open)
        if group.open >= group.size and not group.released:
            self.release(group, spec.linger / 1000)
        return group

    def release(self, group: Group, linger: float) -> None:
        if group.released:
            return
        group.released = True
        if group.timer is not None:
            group.timer.cancel()
        self.loop.call_later(linger, self._finish_group, group)

    def _finish_group(self, group: Group) -> None:
        group.finished = True
        for stream in list(group.streams):
            stream.finish()


class Stream:
    """One response being streamed on a connection: timers write its chunks."""

    __slots__ = (
        "conn",
        "count",
        "created",
        "final_no",
        "group",
        "handle",
        "spec",
        "start",
        "template",
    )

    def __init__(self, conn: Conn, spec: StreamSpec, number: int) -> None:
        self.conn = conn
        self.spec = spec
        self.count = 0
        self.handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self.group: Group | None = None
        self.created = conn.server.created
        self.final_no = number
        self.template = _chunk_template(number, self.created)

    def begin(self) -> None:
        server = self.conn.server
        loop = server.loop
        self.conn.transport.write(_HEAD)
        self.start = loop.time() + self.spec.delay / 1000
        if self.spec.hold:
            self.group = server.join(self, self.spec)
        if self.spec.delay:
            self.handle = loop.call_at(self.start, self._next)
        else:
            self._next()

    def _next(self) -> None:
        self.handle = None
        conn = self.conn
        if conn.closed:
            return
        spec = self.spec
        server = conn.server
        write = conn.transport.write
        template = self.template
        if spec.hold:
            write(template % self.count)
            self.count += 1
            server.chunks += 1
            if self.group is None or self.group.finished:
                self.finish()  # joined after the group was let go
                return
            self.handle = server.loop.call_at(self.start + self.count * spec.gap / 1000,
                                              self._next)
            return
        if spec.gap:
            write(template % self.count)
            self.count += 1
            server.chunks += 1
            if self.count >= spec.n:
                self.finish()
            else:
                self.handle = server.loop.call_at(self.start + self.count * spec.gap / 1000,
                                                  self._next)
            return
        # No gap: write a batch, then let other streams have the loop.
        end = min(spec.n, self.count + _BATCH)
        write(b"".join([template % i for i in range(self.count, end)]))
        server.chunks += end - self.count
        self.count = end
        if self.count >= spec.n:
            self.finish()
        elif not conn.paused:
            self.handle = server.loop.call_soon(self._next)

    def resume(self) -> None:
        if self.handle is None and not self.spec.gap and not self.spec.hold:
            self.handle = self.conn.server.loop.call_soon(self._next)

    def finish(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self._leave()
        conn = self.conn
        if conn.closed:
            return
        conn.transport.write(_final_frame(self.final_no, self.created, self.count) + _DONE)
        conn.server.chunks += 1
        conn.server.streams_done += 1
        conn.end_stream()

    def _leave(self) -> None:
        group = self.group
        if group is not None:
            self.group = None
            group.open -= 1
            group.streams.discard(self)

    def abort(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self._leave()


class Conn(asyncio.Protocol):
    """One client connection: requests, one at a time (keep-alive, no pipelining)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.stream: Stream | None = None
        self.closed = False
        self.paused = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        if self.server.connections > self.server.max_connections:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections -= 1
        if self.stream is not None:
            self.stream.abort()
            self.stream = None
            self.server.streams_open -= 1

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.stream is not None:
            self.stream.resume()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 1 << 20:
            self.transport.abort()
            return
        if self.stream is None:
            self._parse()

    def end_stream(self) -> None:
        self.stream = None
        self.server.streams_open -= 1
        if not self.keep_alive:
            self.transport.close()
        elif self.buffer:
            self._parse()

    def _parse(self) -> None:
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).split(b"\r\n")
        try:
            method, target, version = head[0].split(b" ", 2)
        except ValueError:
            self._reply(b"400 Bad Request", b'{"error":"bad request line"}', close=True)
            return
        headers: dict[bytes, bytes] = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            chunked = self._chunked_body(start)
            if chunked is None:
                return
            body, consumed = chunked
        else:
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(buf) < start + length:
                return
            body = bytes(buf[start:start + length])
            consumed = start + length
        del buf[:consumed]
        conn_header = headers.get(b"connection", b"").lower()
        self.keep_alive = (conn_header != b"close"
                           and (version == b"HTTP/1.1" or conn_header == b"keep-alive"))
        path, _, query = target.partition(b"?")
        self._route(method, path, query, body)

    def _chunked_body(self, start: int) -> tuple[bytes, int] | None:
        buf = self.buffer
        parts: list[bytes] = []
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return None
                return b"".join(parts), trailer_end + 2
            if len(buf) < pos + size + 2:
                return None
            parts.append(bytes(buf[pos:pos + size]))
            pos += size + 2

    def _reply(self, status: bytes, body: bytes, *, close: bool = False) -> None:
        self.transport.write(_plain(status, body))
        if close or not self.keep_alive:
            self.transport.close()

    def _route(self, method: bytes, path: bytes, query: bytes, body: bytes) -> None:
        server = self.server
        if method == b"GET" and path == b"/healthz":
            self._reply(b"200 OK", b'{"status":"ok"}')
            return
        if method == b"GET" and path == b"/stats":
            self._reply(b"200 OK", orjson.dumps(server.stats()))
            return
        if path not in (b"/v1/chat/completions", b"/chat/completions",
                        b"/prompt/optimize-prompt", b"/optimize-stream"):
            self._reply(b"404 Not Found", b'{"error":{"code":"not_found","message":"no route"}}')
            return
        if method != b"POST":
            self._reply(b"405 Method Not Allowed",
                        b'{"error":{"code":"method_not_allowed","message":"POST"}}')
            return
        spec = StreamSpec.parse(body) or (StreamSpec.parse(query) if query else None)
        if spec is None:
            spec = StreamSpec()  # no marker: 50 chunks, no gap
        server.streams_started += 1
        server.streams_open += 1
        self.stream = Stream(self, spec, server.streams_started)
        self.stream.begin()


async def serve(host: str, port: int, max_connections: int, lifetime: float,
                ready_file: str | None) -> None:
    server = Server(max_connections)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Conn(server), host, port, backlog=8192,
                                        reuse_address=True)
    if ready_file:
        # Written whole, then renamed: a reader never sees half a port.
        ready = Path(ready_file)
        partial = ready.with_name(ready.name + ".part")
        partial.write_text(str(listener.sockets[0].getsockname()[1]))
        partial.replace(ready)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime)
    listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--max-connections", type=int, default=50_000)
    parser.add_argument("--lifetime", type=float, default=1800.0,
                        help="exit after this many seconds (default 1800)")
    parser.add_argument("--ready-file", help="write the bound port here once listening")
    args = parser.parse_args()
    check_loopback(args.host)
    with contextlib.suppress(ImportError):  # uvicorn[standard] brings uvloop
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.host, args.port, args.max_connections, args.lifetime,
                      args.ready_file))


if __name__ == "__main__":
    main()
