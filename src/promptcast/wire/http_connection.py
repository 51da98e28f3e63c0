"""One HTTP/1.1 connection of the relay's client, and the streamed response it carries.

An asyncio Protocol fed by httptools' C parser. The parser appends each body
chunk to a list (a C call, no Python frame), and each socket read hands its
chunks over at once: one wake-up of the reader, or one call of a push
listener, per read rather than per chunk (`http_client.py` has the picture).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, cast

import httptools

from promptcast.wire.transport import BodyIncomplete, Headers, HTTPClientError, OnBodies, OnEnd

log = logging.getLogger("promptcast.http_client")

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class Pool(Protocol):
    """Where a response's connection goes back when the response was read to its end."""

    def put_back(self, origin: Origin, conn: Connection) -> None: ...


class Origin(NamedTuple):
    # A tuple: the pool looks its connections up by origin twice a request,
    # and a tuple's hash is C where a frozen dataclass's is a Python call.
    scheme: str
    host: str
    port: int


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; holds at most one response in flight."""

    __slots__ = ("_bodies", "_headers", "_paused", "closed", "loop",
                 "on_body", "parser", "response", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # httptools calls `on_body` per body chunk: a bound `list.append`, so a
        # chunk costs no Python frame; a read's chunks are handed over after it.
        self._bodies: list[bytes] = []
        self.on_body = self._bodies.append
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self._headers = Headers()
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        # Looked up once a connection, not once a request: on Python 3.11 each
        # lookup of the running loop is a getpid() system call.
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc, httptools.HttpParserCallbackError) and exc.__context__:
                # Our own callback raised: a bug here, not a broken upstream.
                log.error("a response callback failed", exc_info=exc.__context__)
            self._hand_over()  # what came whole before the fault goes first
            self._fail(HTTPClientError(f"the upstream broke HTTP/1.1: {exc}"))
            self.close()
            return
        bodies = self._bodies
        response = self.response
        if bodies:
            on_bodies = response.on_bodies if response is not None else None
            if on_bodies is not None:  # push mode, `_hand_over()`'s first case: once a read
                on_bodies(bodies)
                bodies.clear()
            else:
                self._hand_over()
            response = self.response  # the listener may have closed it
        if response is not None and response.on_read is not None:
            response.on_read()

    def eof_received(self) -> bool | None:
        # A body delimited by the connection's end is complete at EOF.
        self._hand_over()
        response = self.response
        if response is not None and not response.complete and response.headers_done \
                and response.until_close:
            response.complete = True
            response.ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.until_close and response.headers_done and exc is None:
                response.complete = True
                response.ended()
            else:
                self._fail(BodyIncomplete("the upstream closed the connection mid-response"))
        # A dead connection's loops (parser ↔ self ↔ response, transport ↔ self)
        # broken now: freed at once, not at the next full garbage collection.
        self.parser = None
        self.response = None
        self.transport = None

    # -- httptools callbacks ---------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools joins a header split across reads before calling this.
        key = name.decode("latin-1").lower()
        headers = self._headers
        if key in headers:
            headers.add(key, value.decode("latin-1"))  # a repeat, kept aside
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        assert self.parser is not None  # it is the one calling
        response.status = self.parser.get_status_code()
        response.headers = self._headers
        response.headers_done = True
        response.until_close = (
            "content-length" not in self._headers
            and "chunked" not in self._headers.get("transfer-encoding", "").lower()
        )
        response.wake()

    def _hand_over(self) -> None:
        """Give the body chunks parsed so far to the response: its push listener, or its deque."""
        bodies = self._bodies
        response = self.response
        if bodies and response is not None:
            on_bodies = response.on_bodies
            if on_bodies is not None:
                on_bodies(bodies)
            else:
                response.chunks.extend(bodies)
                response.buffered += sum(map(len, bodies))
                if (response.buffered > _HIGH_WATER and not self._paused
                        and self.transport is not None):
                    self._paused = True
                    self.transport.pause_reading()
                response.wake()
        bodies.clear()

    def on_message_complete(self) -> None:
        # The body's last chunks reach the response before its end does.
        self._hand_over()
        response = self.response
        if response is None:
            return
        response.complete = True
        assert self.parser is not None
        response.keep_alive = self.parser.should_keep_alive()
        response.ended()

    # -- used by Response --------------------------------------------------------

    def start(self, response: Response) -> None:
        self.response = response
        self._headers = Headers()
        self._bodies.clear()
        self.parser = httptools.HttpResponseParser(self)

    def consumed(self, size: int) -> None:
        response = self.response
        if response is None:
            return
        response.buffered -= size
        if self._paused and response.buffered < _LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, exc: HTTPClientError) -> None:
        response = self.response
        if response is not None and not response.complete:
            response.error = exc
            response.ended()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


@dataclass(eq=False, slots=True)
class Response:
    """A response whose body is read by iterating over it; close it with `aclose()`."""

    _conn: Connection
    _client: Pool
    _origin: Origin
    status: int = 0
    headers: Headers = field(default_factory=Headers)
    headers_done: bool = False
    until_close: bool = False
    complete: bool = False
    keep_alive: bool = False
    error: HTTPClientError | None = None
    chunks: collections.deque[bytes] = field(default_factory=collections.deque)
    buffered: int = 0
    _waiter: asyncio.Future[None] | None = None
    _released: bool = False
    on_bodies: OnBodies | None = None
    on_end: OnEnd | None = None
    on_read: Callable[[], None] | None = None
    _push_paused: bool = False

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ended(self) -> None:
        """The body is complete or failed: tell whoever waits, or the push listener."""
        on_end = self.on_end
        if on_end is not None:
            on_read = self.on_read
            self.on_end = self.on_bodies = self.on_read = None
            if on_read is not None:
                on_read()  # what this read carried before the end goes first
            on_end(self.error)
        else:
            self.wake()

    def deliver(self, on_bodies: OnBodies, on_end: OnEnd, on_read: Callable[[], None]) -> None:
        """From now on hand each read's body chunks to `on_bodies`, then call `on_end` once.

        `on_bodies` gets the chunks of one socket read, in order, in a list it
        must not keep (it is reused); `on_read` follows every read. Chunks already read are handed
        over first, inside this call, then `on_read`. `on_end` gets None when
        the body is complete, the error when it failed; the listener still
        closes the response (`close()`), which may happen inside any of the
        callbacks.
        """
        self.on_bodies = on_bodies
        self.on_end = on_end
        self.on_read = on_read
        chunks = self.chunks
        conn = self._conn
        # Paused above the pull mode's high-water mark: from here on only the
        # listener pauses reading.
        was_paused = conn.paused
        if chunks:
            batch = list(chunks)
            chunks.clear()
            self.buffered = 0
            on_bodies(batch)
        if self.on_read is not None:
            self.on_read()
        if self.on_bodies is None:
            return
        if was_paused and not self._push_paused:
            conn.resume()
        if self.complete or self.error is not None:
            self.ended()

    def pause_reading(self) -> None:
        """Push mode's flow control: stop reading from the upstream until `resume_reading()`."""
        self._push_paused = True
        self._conn.pause()

    def resume_reading(self) -> None:
        self._push_paused = False
        self._conn.resume()

    async def _wait(self) -> None:
        loop = self._conn.loop or asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        chunks = self.chunks
        conn = self._conn
        while True:
            if chunks:
                chunk = chunks.popleft()
                conn.consumed(len(chunk))
                yield chunk
                continue
            if self.error is not None:
                raise self.error
            if self.complete:
                self._release()
                return
            await self._wait()

    async def read(self, limit: int) -> bytes:
        """The whole body, up to `limit` bytes (the rest is dropped with the connection)."""
        body = bytearray()
        async for chunk in self:
            body += chunk
            if len(body) >= limit:
                break
        await self.aclose()
        return bytes(body[:limit])

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self.on_bodies = self.on_end = self.on_read = None
        conn = self._conn
        if self.complete and self.keep_alive and not conn.closed and self.error is None:
            conn.response = None
            conn.resume()  # a listener may have paused it after the last byte came
            self._client.put_back(self._origin, conn)
        else:
            conn.close()

    def close(self) -> None:
        """Done with it: a finished response's connection is reused, any other is closed."""
        self._release()

    async def aclose(self) -> None:
        """`close()`, for `async with`-style owners."""
        self._release()
