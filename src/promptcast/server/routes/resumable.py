"""Resumable streams over HTTP: a detached start, its followers, resume and cancel routes.

    POST {"resumable": true} ── start_resumable: a `Producer` task relays into the
                                streams store; this response follows it from 0
    GET  /optimize-stream/<id>  (Last-Event-ID) ── resume_stream: follow after n
    DELETE /optimize-stream/<id> ── cancel_stream: the producer stops, on any replica
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from promptcast import ids
from promptcast.errors import InvalidField, NotFound, PromptcastError, StoreUnavailable
from promptcast.relay.relay import Relay, error_frame
from promptcast.relay.resumable import (
    RENEW_INTERVAL,
    Position,
    Producer,
    follow,
    parse_last_event_id,
)
from promptcast.relay.sink import writable
from promptcast.relay.streams import Batch
from promptcast.server import records
from promptcast.server.http import runtime_of
from promptcast.server.runtime import Runtime
from promptcast.server.start import NotStarted, Start
from promptcast.server.streaming import AsgiConnection, finished, opened_for


async def start_resumable(request: Request, rt: Runtime, start: Start) -> Response:
    """Start a detached producer (or join the one with this Idempotency-Key) and follow it."""
    stream_id = ids.stream_id()
    headers = {"X-Request-ID": start.request_id}
    try:
        existing = await rt.store.create(stream_id, start.idempotency_key)
    except PromptcastError as exc:  # the store is full or unreachable
        raise NotStarted(exc, start.label) from None
    if existing is not None:
        return FollowResponse(rt, Position(existing, 0), None, headers)
    try:
        events = await opened_for(request.scope, request.receive, start.open(),
                                  rt.settings.first_token_timeout)
    except BaseException as exc:
        # Whatever ended the start (an error, the client leaving, a bug), the
        # stream it made room for must not stay behind, in the store or here.
        with contextlib.suppress(StoreUnavailable):
            await rt.store.discard(stream_id)
        if isinstance(exc, PromptcastError):
            raise NotStarted(exc, start.label) from None
        raise
    capture = records.capture(rt, records.client_of(request.scope), stream_id, start.body)
    relay = Relay(events, replace(rt.limits, heartbeat_interval=None), stream_id,
                  tap=None if capture is None else capture.write)
    producer = Producer(
        rt.store, relay, stream_id, grace=rt.settings.resume_grace, drain=rt.drain,
        on_end=partial(finished, rt, model=start.model, mode=start.mode,
                       request_id=start.request_id, capture=capture),
    )
    rt.metrics.started(start.model)
    rt.producers[stream_id] = producer
    task = asyncio.get_running_loop().create_task(producer.run(), name=f"producer-{stream_id}")
    rt.tasks.add(task)

    def done(_: asyncio.Task[None]) -> None:
        rt.tasks.discard(task)
        rt.producers.pop(stream_id, None)

    task.add_done_callback(done)
    return FollowResponse(rt, Position(stream_id, 0), None, headers)


class FollowResponse(Response):
    """Replay and tail a stored stream for this client; its leaving stops only the reading."""

    def __init__(self, rt: Runtime, position: Position, first: Batch | None,
                 headers: dict[str, str]) -> None:
        # Not Starlette's __init__: the body is written as it comes.
        self.status_code = 200
        self.background = None
        self._rt = rt
        self._position = position
        self._first = first
        self._stream_headers = [(b"x-stream-id", position.stream_id.encode()),
                                *((k.lower().encode(), v.encode()) for k, v in headers.items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self._rt
        sink = await AsgiConnection(scope, receive, send, "").start(self._stream_headers)
        gone = asyncio.Event()
        sink.on_stop(lambda _: gone.set())

        async def write(frame: bytes) -> None:
            await writable(sink)
            if not sink.write([frame], 0):
                raise OSError("the client is gone")

        # Touch often enough that a reader is never taken for gone within the grace period.
        touch = min(RENEW_INTERVAL, rt.settings.resume_grace / 3)
        reason = await race(
            follow(rt.store, self._position, write, first=self._first,
                   heartbeat_interval=rt.settings.heartbeat_interval, touch_interval=touch),
            gone.wait, rt.drain.expired(),
        )
        if reason is not None:
            # No id: the stream itself goes on, and can be resumed elsewhere.
            with contextlib.suppress(OSError):
                await write(error_frame(reason))
        sink.on_stop(None)
        await sink.close([], 0, lambda: None)


async def race(work: Awaitable[Any], gone: Callable[[], Awaitable[Any]],
               stop: Awaitable[PromptcastError]) -> PromptcastError | None:
    """Run `work` until it ends, the client leaves, or `stop` gives a reason to end it."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(gone())
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


def _stream_id_of(request: Request) -> str:
    stream_id = str(request.path_params["stream_id"])
    if not 1 <= len(stream_id) <= 64 or not all(c.isalnum() or c in "-_" for c in stream_id):
        raise NotFound(f"no stream {stream_id[:64]!r}")
    return stream_id


async def resume_stream(request: Request) -> Response:
    """GET /optimize-stream/<id>: replay after Last-Event-ID, then follow the live tail."""
    rt = runtime_of(request)
    stream_id = _stream_id_of(request)
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    try:
        after = parse_last_event_id(stream_id, last)
    except ValueError as exc:
        bad_id: InvalidField | None = InvalidField(str(exc), field="Last-Event-ID")
        after = 0
    else:
        bad_id = None
    first = await rt.store.read(stream_id, after, 0)
    if first is None:
        raise NotFound(
            f"no stream {stream_id!r}: it never existed, was not resumable, or has expired"
        )
    if bad_id is not None:
        raise bad_id
    if after > first.last_seq:
        raise InvalidField(
            f"Last-Event-ID {last!r} is past the stream's last event ({first.last_seq})",
            field="Last-Event-ID",
        )
    if first.finished and after == first.last_seq:
        # Everything was delivered: 204 tells EventSource to stop reconnecting.
        return Response(status_code=204)
    return FollowResponse(rt, Position(stream_id, after), first, {})


async def cancel_stream(request: Request) -> Response:
    """DELETE /optimize-stream/<id>: stop a resumable stream's generation now."""
    rt = runtime_of(request)
    stream_id = _stream_id_of(request)
    if not await rt.store.cancel(stream_id):
        raise NotFound(f"no stream {stream_id!r}: it never existed or has expired")
    producer = rt.producers.get(stream_id)
    if producer is not None:
        producer.cancel()
    return JSONResponse({"id": stream_id, "status": "cancelling"}, status_code=202)
