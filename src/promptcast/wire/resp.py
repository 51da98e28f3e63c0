"""A plain connection to Redis for pipelines of XADDs: RESP by hand, replies read by hiredis.

Through redis-py, each `XADD` pays for a pool checkout, a timeout and a
stream reader per reply. This connection makes one write per pipeline, and
parses its replies in `data_received` as they come (docs/architecture.md has
what each costs).
It carries only the batcher's commands, for `redis://` and `unix://` URLs;
`rediss://` keeps redis-py (which knows TLS and its options).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any


def encode(*args: bytes | str | int) -> bytes:
    """One command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def supports(url: str) -> bool:
    """Whether `RespPipe` can reach this URL (no TLS)."""
    return url.startswith(("redis://", "unix://"))


class _Pipeline:
    """One pipeline's replies as they arrive; `done` completes with all of them."""

    __slots__ = ("done", "expected", "replies")

    def __init__(self, done: asyncio.Future[list[Reply]], expected: int) -> None:
        self.done = done
        self.expected = expected
        self.replies: list[Reply] = []


class _Protocol(asyncio.Protocol):
    """Hands replies to the oldest pipeline still waiting, in order; fails them all if it drops."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: collections.deque[_Pipeline] = collections.deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            pipeline = waiting[0]
            pipeline.replies.append(reply)
            if len(pipeline.replies) == pipeline.expected:
                waiting.popleft()
                if not pipeline.done.done():
                    pipeline.done.set_result(pipeline.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("the connection to Redis was lost"))

    def fail(self, exc: Exception) -> None:
        """Close, and give every pipeline still waiting `exc` (each has one awaiting sender)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # nothing still buffered may be sent: it was reported failed
        waiting, self.waiting = self.waiting, collections.deque()
        for pipeline in waiting:
            if not pipeline.done.done():
                pipeline.done.set_exception(exc)


class RespPipe:
    """Sends pipelines over one connection, opened on first use and again after a failure."""

    def __init__(self, url: str, *, connect_timeout: float, reply_timeout: float) -> None:
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host = str(options.get("host") or "localhost")
        self._port = int(options.get("port") or 6379)
        self._db = int(options.get("db") or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def send(self, commands: list[bytes]) -> list[Reply]:
        """Each command's reply, in order; an error reply is a `ResponseError` in the list.

        Raises redis-py's `ConnectionError` or `TimeoutError` if the connection
        fails, and then closes it: the next call opens a new one.
        """
        if not commands:
            return []
        return await self._exchange(await self._connected(), commands)

    async def _exchange(self, protocol: _Protocol, commands: list[bytes]) -> list[Reply]:
        loop = asyncio.get_running_loop()
        pipeline = _Pipeline(loop.create_future(), len(commands))
        protocol.waiting.append(pipeline)
        assert protocol.transport is not None
        protocol.transport.write(b"".join(commands))
        # A timer, not asyncio.timeout: this runs once per pipeline, on the hot path.
        timer = loop.call_later(self._reply_timeout, protocol.fail,
                                RedisTimeoutError("Redis did not answer in time"))
        try:
            return await pipeline.done
        except asyncio.CancelledError:
            # Its replies would still be counted against it, but the next
            # pipeline would wait behind them: start afresh.
            protocol.fail(RedisConnectionError("a pipeline was cancelled"))
            raise
        finally:
            timer.cancel()

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            protocol = self._protocol
            if protocol is None or protocol.closed:
                protocol = self._protocol = await self._open()
        return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    _, protocol = await loop.create_connection(_Protocol, self._host,
                                                               self._port)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
        hello: list[bytes] = []
        if self._username or self._password:
            # As redis-py: AUTH [user] password, an empty password if none.
            who = [self._username] if self._username else []
            hello.append(encode("AUTH", *who, self._password or ""))
        if self._db:
            hello.append(encode("SELECT", self._db))
        for reply in await self._exchange(protocol, hello) if hello else []:
            if isinstance(reply, ResponseError):
                protocol.fail(RedisConnectionError(f"Redis refused the connection: {reply}"))
                raise RedisConnectionError(f"Redis refused the connection: {reply}")
        return protocol

    def close(self) -> None:
        """Close the connection; commands still waiting fail."""
        if self._protocol is not None:
            with contextlib.suppress(Exception):
                self._protocol.fail(RedisConnectionError("closed"))
            self._protocol = None
