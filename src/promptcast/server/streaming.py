"""Serving a planned stream start, the one way for both doors: open, start, relay, finish.

    open the upstream ── bounded by the first-token limit and the client's patience
        │ refused (a 4xx/5xx known before the first byte) → the JSON error
        ▼
    200 + event-stream headers ── Relay.run(sink) ── the stream's log line and metrics

A `Connection` is what differs between the doors: the ASGI app's request
(`AsgiConnection`, here) and the door's below ASGI (`door.ExchangeConnection`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from promptcast import ids
from promptcast.errors import ClientGone, PromptcastError, StreamTimeout
from promptcast.ops.logs import STREAM_LOGGED, log_stream
from promptcast.relay.relay import Relay, StreamStats
from promptcast.relay.sink import Sink
from promptcast.server import records
from promptcast.server.channels import DirectChannel, channel_of
from promptcast.server.http import error_response
from promptcast.server.runtime import Runtime
from promptcast.server.sinks import ChannelSink, SendSink, ended_by_send
from promptcast.server.start import Start

T = TypeVar("T")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
SSE_RAW_HEADERS = tuple(
    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SSE_HEADERS.items()
)


class Connection(Protocol):
    """One request's connection, as a stream's start and life need it."""

    path: str
    loop: asyncio.AbstractEventLoop
    client: str | None  # who asks, as the key middleware names it (run records' owner)

    async def opened(self, opening: Awaitable[T], limit: float) -> T:
        """`opening`'s result, unless `limit` s pass (`StreamTimeout`) or the client leaves
        (`ClientGone`) first."""

    async def refuse(self, exc: PromptcastError) -> None:
        """Answer with `exc` as an HTTP error."""

    async def start(self, headers: list[tuple[bytes, bytes]]) -> Sink:
        """Send the 200 and its headers (with the event-stream ones); the body's sink."""

    def logged(self) -> None:
        """The stream's own line was logged: no access line for this request."""


async def serve(rt: Runtime, start: Start, conn: Connection) -> None:
    """Open `start`'s upstream and relay it to `conn` until the stream ends, once."""
    opening = start.open()
    try:
        upstream = await conn.opened(opening, rt.settings.first_token_timeout)
    except PromptcastError as exc:
        rt.metrics.error(start.label, exc.error_code)
        await conn.refuse(exc)
        return
    finally:
        opening.close()  # never started if the client left first
    stream_id = ids.stream_id()
    sink = await conn.start([(b"x-stream-id", stream_id.encode()),
                             (b"x-request-id", start.request_id.encode())])
    capture = records.capture(rt, conn.client, stream_id, start.body, kind=start.record_kind)
    relay = Relay(upstream, start.limits or rt.limits, stream_id,
                  openai_errors=start.openai_errors, loop=conn.loop,
                  tap=None if capture is None else capture.write)
    rt.metrics.started(start.model)
    stats = await relay.run(sink, rt.drain)
    finished(rt, stats, model=start.model, mode=start.mode, request_id=start.request_id,
             path=conn.path, capture=capture)
    conn.logged()


def finished(rt: Runtime, stats: StreamStats, *, model: str, mode: str,
             request_id: str | None, path: str | None = None,
             capture: records.Capture | None = None) -> None:
    """One stream ended: its log line, its metrics, its run record (queued, never awaited)."""
    log_stream(stats, model=model, mode=mode, request_id=request_id, path=path)
    rt.metrics.finished(stats, model)
    if capture is not None:
        capture.finish(stats)


def not_started(limit: float) -> StreamTimeout:
    return StreamTimeout(f"the model did not start answering within {limit:g} s")


async def opened_on(channel: DirectChannel, opening: Awaitable[T], limit: float,
                    loop: asyncio.AbstractEventLoop) -> T:
    """`Connection.opened` in this task; the connection says when the client leaves."""
    task = asyncio.current_task(loop)
    assert task is not None
    if channel.gone:
        raise ClientGone("the client disconnected before the stream started")
    # One timer handle and the connection's own callback: no watching task.
    cancels = 0

    def stop() -> None:
        nonlocal cancels
        cancels += 1
        task.cancel()

    timer = loop.call_later(limit, stop)
    channel.on_gone(stop)
    try:
        return await opening
    except asyncio.CancelledError:
        if not cancels or task.cancelling() > cancels:
            raise  # someone else cancels this task too
        if channel.gone:  # gone and late both: the client left, nobody waits for a 504
            raise ClientGone("the client disconnected before the stream started") from None
        raise not_started(limit) from None
    finally:
        timer.cancel()
        channel.on_gone(None)
        # Our own cancels undone however the wait ended, even if it swallowed one.
        for _ in range(cancels):
            task.uncancel()


async def first_of(work: Awaitable[T], disconnected: Callable[[], Awaitable[None]],
                   limit: float) -> T:
    """`work`'s result, unless the client leaves (`ClientGone`) or `limit` s pass first."""
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
        raise ClientGone("the client disconnected before the stream started")
    raise not_started(limit)


async def opened_for(scope: Scope, receive: Receive, opening: Awaitable[T], limit: float) -> T:
    """`Connection.opened` for a request of the ASGI app."""
    channel = channel_of(scope)
    if channel is not None:
        return await opened_on(channel, opening, limit, asyncio.get_running_loop())

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return await first_of(opening, disconnected, limit)


class AsgiConnection:
    """A request the ASGI app serves: written through the server's channel when it offers one
    (`channels.py`), else through `send`."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        self.path: str = scope["path"]
        self.loop = asyncio.get_running_loop()
        self.client = records.client_of(scope)
        self._scope = scope
        self._receive = receive
        self._send = send
        self._request_id = request_id

    async def opened(self, opening: Awaitable[T], limit: float) -> T:
        return await opened_for(self._scope, self._receive, opening, limit)

    async def refuse(self, exc: PromptcastError) -> None:
        await error_response(exc, self._request_id)(self._scope, self._receive, self._send)

    async def start(self, headers: list[tuple[bytes, bytes]]) -> Sink:
        await self._send({"type": "http.response.start", "status": 200,
                          "headers": [*SSE_RAW_HEADERS, *headers]})
        channel = channel_of(self._scope)
        if channel is not None and channel.ready:
            return ChannelSink(channel, ended_by_send(self._send))
        return SendSink(self._send, self._receive)

    def logged(self) -> None:
        self._scope[STREAM_LOGGED] = True


class StartResponse(Response):
    """The response of a planned stream start on the ASGI app: `serve` it."""

    def __init__(self, rt: Runtime, start: Start) -> None:
        # Not Starlette's __init__: there is no body to render.
        self.status_code = 200
        self.background = None
        self._rt = rt
        self._start = start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(self._rt, self._start,
                    AsgiConnection(scope, receive, send, self._start.request_id))


def stream_headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """The event-stream headers and `extra`, as ASGI raw headers."""
    return [*SSE_RAW_HEADERS, *((k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in extra.items())]

