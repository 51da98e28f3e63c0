"""The event-stream response: ASGI plumbing between a stream's writer and the client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from promptcast.errors import PromptcastError
from promptcast.relay.relay import HEARTBEAT
from promptcast.server.direct import DirectChannel, channel_of

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}

SSE_RAW_HEADERS = tuple(
    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SSE_HEADERS.items()
)

Disconnected = Callable[[], Awaitable[None]]
# Where the app keeps the server's own `send` (see api.PromptcastApp).
RAW_SEND = "promptcast.send"
_FINAL_WRITE_TIMEOUT = 5.0
T = TypeVar("T")


class ClientSink:
    """A relay's sink that writes each frame to the client as one ASGI message.

    `channel` is the connection itself when the server offers one (`direct.py`).
    """

    __slots__ = ("_send", "channel", "last")

    def __init__(self, send: Send, channel: DirectChannel | None = None) -> None:
        self._send = send
        self.channel = channel
        # Sent with the end of the body, in the same write.
        self.last = b""

    async def write(self, frame: bytes) -> None:
        """Write `frame`; straight to the connection when it takes writes, else through `send`."""
        channel = self.channel
        if channel is not None and not channel.paused:
            # No task hop through the server's send; a paused client goes the
            # slow way below, which waits for it to drain.
            if not channel.write(frame):
                raise OSError("the client is gone")
            return
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def event(self, seq: int, frame: bytes) -> None:
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def terminal(self, seq: int, frame: bytes) -> None:
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def heartbeat(self) -> None:
        await self._send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})


class EventStreamResponse(Response):
    """A 200 `text/event-stream` whose body `produce(sink, disconnected)` writes."""

    def __init__(
        self,
        produce: Callable[[ClientSink, Disconnected], Awaitable[None]],
        headers: dict[str, str],
    ) -> None:
        # Not Starlette's __init__: it would add a Content-Length, and encode
        # the fixed headers anew for every stream.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [*SSE_RAW_HEADERS, *(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        )]
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # The middleware saw the start (status, headers); the body's chunks skip
        # their send wrappers, which only look at the start, and go straight to
        # the server: several calls fewer per chunk on the hot path.
        send = scope.get(RAW_SEND, send)

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        channel = channel_of(scope)
        if channel is not None and not channel.ready:
            channel = None
        sink = ClientSink(send, channel)
        await self._produce(sink, disconnected)
        # Bounded: a client that stopped reading would otherwise hold this forever.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_FINAL_WRITE_TIMEOUT):
                await send({"type": "http.response.body", "body": sink.last, "more_body": False})


async def first_of(work: Awaitable[T], disconnected: Disconnected, limit: float,
                   on_timeout: Callable[[], Exception]) -> T:
    """`work`'s result, unless the client leaves first (CancelledError) or `limit` s pass."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watch}, timeout=limit,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if watch in done:
        raise asyncio.CancelledError("the client disconnected")
    raise on_timeout()


async def race(
    work: Awaitable[Any], disconnected: Disconnected, stop: Awaitable[PromptcastError]
) -> PromptcastError | None:
    """Run `work` until it ends, the client leaves, or `stop` gives a reason to end it."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    stopper = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({task, watch, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watch, stopper):
            pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
    if stopper.done() and not stopper.cancelled() and not task.done():
        return stopper.result()
    return None


async def first_reason(
    disconnected: Disconnected, stop: Awaitable[PromptcastError]
) -> PromptcastError | None:
    """None when the client leaves, or `stop`'s reason if it comes first."""
    watch = asyncio.ensure_future(disconnected())
    stopper = asyncio.ensure_future(stop)
    try:
        done, _ = await asyncio.wait({watch, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        stopper.cancel()
    return stopper.result() if stopper in done else None
