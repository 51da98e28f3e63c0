"""The routes that start, resume and cancel streams, and their starts below ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from promptcast import ids
from promptcast.errors import (
    ClientGone,
    InvalidField,
    NotFound,
    PromptcastError,
    StoreUnavailable,
    StreamTimeout,
)
from promptcast.ops.auth import bearer, matching_key, owners
from promptcast.ops.logs import (
    STREAM_LOGGED,
    access_log,
    log_stream,
    request_id_var,
    valid_request_id,
)
from promptcast.relay.relay import HEARTBEAT, Outcome, Relay, StreamStats, error_frame
from promptcast.relay.resumable import (
    RENEW_INTERVAL,
    Position,
    Producer,
    follow,
    parse_last_event_id,
)
from promptcast.relay.source import ChunkEvents, EventStream
from promptcast.relay.streams import Batch
from promptcast.server import records
from promptcast.server.direct import (
    DirectChannel,
    Exchange,
    channel_of,
    render_headers,
)
from promptcast.server.http import error_response, is_json, read_json, request_id_of, runtime_of
from promptcast.server.responses import (
    SSE_RAW_HEADERS,
    ClientSink,
    Disconnected,
    EventStreamResponse,
    first_of,
    first_reason,
    race,
)
from promptcast.server.routes import templates
from promptcast.server.runtime import Runtime
from promptcast.service.model_service import collect
from promptcast.service.schemas import OptimizeRequest, parse_chat, parse_json, parse_optimize
from promptcast.settings import ApiKey

STATIC = Path(__file__).parent.parent / "static"
T = TypeVar("T")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


_SSE_HEAD = render_headers(SSE_RAW_HEADERS)


def _new_stream_id() -> str:
    return ids.stream_id()


def _stream_response(
    request: Request, rt: Runtime, events: EventStream, request_id: str,
    log_fields: dict[str, Any], *, openai_errors: bool = False, body: records.Body | None = None,
) -> EventStreamResponse:
    """Relay `events` straight to this client; its leaving cancels the upstream."""
    stream_id = _new_stream_id()
    scope = request.scope
    capture = records.capture(rt, records.client_of(scope), stream_id, body)
    relay = Relay(events, rt.limits, stream_id, openai_errors=openai_errors,
                  tap=capture.write if capture else None)

    async def produce(sink: ClientSink, disconnected: Disconnected) -> None:
        rt.metrics.started(log_fields["model"])
        if sink.channel is not None and relay.can_run_direct():
            stats = await relay.run_direct(sink.channel, rt.drain)
            sink.last = relay.last_frame
        else:
            async def stopped() -> PromptcastError | None:
                return await first_reason(disconnected, rt.drain.expired())

            stats = await relay.run(sink, stopped)
        _finished(rt, stats, request_id=request_id, path=scope["path"], capture=capture,
                  **log_fields)
        scope[STREAM_LOGGED] = True

    return EventStreamResponse(produce, {"X-Stream-Id": stream_id, "X-Request-ID": request_id})


def _finished(rt: Runtime, stats: StreamStats, *, model: str, mode: str,
              request_id: str | None, path: str | None = None,
              capture: records.Capture | None = None) -> None:
    """One stream ended: its log line, its metrics and its run record (queued, never awaited)."""
    log_stream(stats, model=model, mode=mode, request_id=request_id, path=path)
    rt.metrics.finished(stats, model)
    if capture is not None:
        capture.finish(stats)


def _follow_response(rt: Runtime, position: Position, first: Batch | None,
                     headers: dict[str, str]) -> EventStreamResponse:
    """Replay and tail a stored stream for this client; its leaving stops only the reading."""
    heartbeat = rt.settings.heartbeat_interval
    # Touch often enough that a reader is never taken for gone within the grace period.
    touch = min(RENEW_INTERVAL, rt.settings.resume_grace / 3)

    async def produce(sink: ClientSink, disconnected: Disconnected) -> None:
        reason = await race(
            follow(rt.store, position, sink.write, first=first,
                   heartbeat_interval=heartbeat, touch_interval=touch),
            disconnected,
            rt.drain.expired(),
        )
        if reason is not None:
            # No id: the stream itself goes on, and can be resumed elsewhere.
            with contextlib.suppress(OSError):
                await sink.write(error_frame(reason))

    return EventStreamResponse(produce, {"X-Stream-Id": position.stream_id, **headers})


async def _opened(request: Request, rt: Runtime, opening: Awaitable[T]) -> T:
    """Await an upstream's opening, bounded by the first-token timeout and the client's patience."""
    limit = rt.settings.first_token_timeout
    channel = channel_of(request.scope)
    if channel is not None:
        return await _opened_on(channel, opening, limit)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        return await first_of(opening, disconnected, limit, lambda: _not_started(limit))
    except asyncio.CancelledError:
        if (task := asyncio.current_task()) is not None and task.cancelling():
            raise
        raise ClientGone("the client disconnected before the stream started") from None


async def _opened_on(channel: DirectChannel, opening: Awaitable[T], limit: float,
                     loop: asyncio.AbstractEventLoop | None = None) -> T:
    """`_opened` in this task; the connection says when the client leaves: no extra tasks."""
    # The loop passed in, where the caller knows it: on Python 3.11 each lookup
    # of the running loop is a getpid() system call.
    loop = loop or asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    if channel.gone:
        raise ClientGone("the client disconnected before the stream started")
    # One timer handle rather than `asyncio.timeout()`'s context manager: this
    # runs once per stream, where every few microseconds count (benchmarks.md).
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
        raise _not_started(limit) from None
    finally:
        timer.cancel()
        channel.on_gone(None)
        # Our own cancels undone however the wait ended, even if it swallowed one.
        for _ in range(cancels):
            task.uncancel()


def _not_started(limit: float) -> StreamTimeout:
    return StreamTimeout(f"the model did not start answering within {limit:g} s")


async def _start_resumable(request: Request, rt: Runtime, body: OptimizeRequest,
                           request_id: str, idempotency_key: str | None
                           ) -> EventStreamResponse:
    """Start a detached producer (or join the one with this Idempotency-Key) and follow it."""
    stream_id = _new_stream_id()
    headers = {"X-Request-ID": request_id}
    existing = await rt.store.create(stream_id, idempotency_key)
    if existing is not None:
        return _follow_response(rt, Position(existing, 0), None, headers)
    try:
        events = await _opened(request, rt, rt.gateway.open(body, request_id))
    except BaseException:
        # Whatever ended the start (an error, the client leaving, a bug), the
        # stream it made room for must not stay behind, in the store or here.
        with contextlib.suppress(StoreUnavailable):
            await rt.store.discard(stream_id)
        raise
    producer_limits = replace(rt.limits, heartbeat_interval=None)
    capture = records.capture(rt, records.client_of(request.scope), stream_id, body)
    producer = Producer(
        rt.store, Relay(events, producer_limits, stream_id, tap=capture.write if capture else None),
        stream_id, grace=rt.settings.resume_grace, drain=rt.drain,
        on_end=partial(_finished, rt, model=body.model, mode=body.mode.value,
                       request_id=request_id, capture=capture),
    )
    rt.metrics.started(body.model)
    rt.producers[stream_id] = producer
    task = asyncio.get_running_loop().create_task(producer.run(), name=f"producer-{stream_id}")
    rt.tasks.add(task)

    def done(_: asyncio.Task[None]) -> None:
        rt.tasks.discard(task)
        rt.producers.pop(stream_id, None)

    task.add_done_callback(done)
    return _follow_response(rt, Position(stream_id, 0), None, headers)


async def _optimize(request: Request, *, gateway: bool) -> Response:
    rt = runtime_of(request)
    request_id = request_id_of(request)
    body: OptimizeRequest | None = None
    try:
        data = await read_json(request, rt.settings.max_body_bytes)
        body = await templates.resolve(rt, request.scope, _parse_optimize(rt, data))
        if not body.stream:
            if gateway:
                raise InvalidField(
                    "`stream` must be true on /optimize-stream; for one JSON answer, "
                    "POST /prompt/optimize-prompt with \"stream\": false",
                    field="stream",
                )
            return await _optimize_once(rt, body, request_id)
        key = request.headers.get("idempotency-key")
        if gateway and (body.resumable or key):
            return await _start_resumable(request, rt, body, request_id, _idempotency_key(key))
        source = rt.gateway if gateway else rt.local_source
        events = await _opened(request, rt, source.open(body, request_id))
    except PromptcastError as exc:
        rt.metrics.error(body.model if body is not None else "", exc.error_code)
        return error_response(exc, request_id)
    return _stream_response(request, rt, events, request_id,
                            {"model": body.model, "mode": body.mode.value}, body=body)


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise InvalidField("Idempotency-Key must be 1 to 200 printable ASCII characters",
                           field="Idempotency-Key")
    return value


def _parse_optimize(rt: Runtime, data: dict[str, Any]) -> OptimizeRequest:
    s = rt.settings
    return parse_optimize(
        data,
        default_model=s.models.default,
        max_prompt_chars=s.max_prompt_chars,
        max_opening_chars=s.max_opening_chars,
    )


async def _optimize_once(rt: Runtime, body: OptimizeRequest, request_id: str) -> Response:
    stream = await rt.service.optimize(body, request_id)
    async with _total_timeout(rt):
        result = await collect(stream, body.model)
    return JSONResponse(result, headers={"X-Request-ID": request_id})


@contextlib.asynccontextmanager
async def _total_timeout(rt: Runtime) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(rt.limits.total_timeout):
            yield
    except TimeoutError:
        raise StreamTimeout(
            f"the completion took longer than {rt.limits.total_timeout:g} s"
        ) from None


async def optimize_stream(request: Request) -> Response:
    """POST /optimize-stream: the gateway."""
    return await _optimize(request, gateway=True)


async def optimize_prompt(request: Request) -> Response:
    """POST /prompt/optimize-prompt: the model service."""
    return await _optimize(request, gateway=False)


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
    return _follow_response(rt, Position(stream_id, after), first, {})


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


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions, OpenAI-compatible."""
    rt = runtime_of(request)
    request_id = request_id_of(request)
    data: dict[str, Any] = {}
    try:
        data = await read_json(request, rt.settings.max_body_bytes)
        body = parse_chat(data, default_model=rt.settings.models.default)
        chat = replace(body.request, request_id=request_id)
        stream = await _opened(request, rt, rt.service.chat(chat))
        if not body.stream:
            async with _total_timeout(rt):
                result = await collect(stream, chat.model)
            return JSONResponse(result, headers={"X-Request-ID": request_id})
    except PromptcastError as exc:
        rt.metrics.error(str(data.get("model") or ""), exc.error_code)
        return error_response(exc, request_id)
    events = ChunkEvents(stream, include_usage=body.include_usage)
    return _stream_response(request, rt, events, request_id,
                            {"model": chat.model, "mode": "chat"}, openai_errors=True, body=chat)


_STREAM_STARTS = (optimize_stream, optimize_prompt, chat_completions)


class HotRoutes:
    """The POST routes that start streams, reached without the router and its wrappers.

    A stream's start is most of what a short stream costs the relay; the
    router's matching, its exception wrappers and the per-route request
    plumbing took a share of it. Innermost of the user middleware, so every
    middleware (request ids, CORS, keys, limits) still sees these requests.
    """

    def __init__(self, app: ASGIApp, *,
                 routes: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.routes.get(scope["path"])
            if endpoint is not None:
                try:
                    response = await endpoint(Request(scope, receive))
                except PromptcastError as exc:  # what the router's handler would have done
                    response = error_response(exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_Route = Callable[[Exchange, dict[str, Any], str], "Coroutine[Any, Any, None] | None"]


class FastStreams:
    """The stream starts `promptcast serve` answers below ASGI (`direct.StreamRoutes`).

    A plain stream start, well formed, is served here exactly as the app
    would serve it: same checks, same bytes, same log line and metrics,
    without the request cycle and middleware frames a stream would hold for
    its whole life (docs/benchmarks.md). Anything else goes on to the app,
    which answers it as it always has: a body that does not parse, a missing
    or unknown key, a resumable start, a request from a CORS origin. With
    rate limits on, every request goes through the app, whose middleware
    counts them.
    """

    def __init__(self, rt: Runtime, keys: tuple[ApiKey | str, ...]) -> None:
        self._rt = rt
        self.loop = asyncio.get_running_loop()
        self.max_body = rt.settings.max_body_bytes
        self._owners = owners(keys)
        self._keys = list(self._owners) if keys else None
        self._cors = bool(rt.settings.cors_origins)
        self._routes: dict[str, _Route] = {
            "/optimize-stream": self._gateway,
            "/prod-api/optimize-stream": self._gateway,
            "/prompt/optimize-prompt": self._local,
            "/v1/chat/completions": self._chat,
        }

    def claims(self, path: str) -> bool:
        """Whether a POST to `path` may be a stream start."""
        return path in self._routes

    def start(self, exchange: Exchange) -> Coroutine[Any, Any, None] | None:
        """The coroutine serving `exchange`, or None when the app must answer it."""
        if self._cors and exchange.header(b"origin") is not None:
            return None  # the CORS middleware adds its headers
        if exchange.header(b"idempotency-key") is not None:
            return None  # a resumable start
        ctype = exchange.header(b"content-type") or b""
        if not is_json(ctype.decode("latin-1").split(";")[0].strip().lower()):
            return None
        if self._keys is not None:
            presented = bearer(exchange.headers)
            if presented is None or matching_key(self._keys, presented) is None:
                return None
        try:
            data = parse_json(exchange.body)
        except PromptcastError:
            return None
        given = (exchange.header(b"x-request-id") or b"").decode("latin-1")
        request_id = given if valid_request_id(given) else ids.request_id()
        try:
            return self._routes[exchange.path](exchange, data, request_id)
        except PromptcastError:
            return None

    def _gateway(self, exchange: Exchange, data: dict[str, Any],
                 request_id: str) -> Coroutine[Any, Any, None] | None:
        body = _parse_optimize(self._rt, data)
        if not body.stream or body.resumable or body.template:
            return None
        return self._serve(exchange, self._rt.gateway.open(body, request_id), request_id,
                           body.model, body.mode, body=body)

    def _local(self, exchange: Exchange, data: dict[str, Any],
               request_id: str) -> Coroutine[Any, Any, None] | None:
        body = _parse_optimize(self._rt, data)
        if not body.stream or body.template:
            return None
        return self._serve(exchange, self._rt.local_source.open(body, request_id), request_id,
                           body.model, body.mode, body=body)

    def _chat(self, exchange: Exchange, data: dict[str, Any],
              request_id: str) -> Coroutine[Any, Any, None] | None:
        body = parse_chat(data, default_model=self._rt.settings.models.default)
        if not body.stream:
            return None
        chat = replace(body.request, request_id=request_id)

        async def opening() -> EventStream:
            return ChunkEvents(await self._rt.service.chat(chat),
                               include_usage=body.include_usage)

        # Errors are counted under the model as asked for, as the app counts them.
        return self._serve(exchange, opening(), request_id, chat.model, "chat",
                           openai_errors=True, error_label=str(data.get("model") or ""),
                           body=chat)

    async def _serve(self, exchange: Exchange, opening: Coroutine[Any, Any, EventStream],
                     request_id: str, model: str, mode: str, *,
                     openai_errors: bool = False, error_label: str | None = None,
                     body: records.Body | None = None) -> None:
        """`_opened`, `_stream_response` and `RequestIdMiddleware`'s part, on the exchange."""
        rt = self._rt
        # This task's own context: every line logged for the stream names it.
        request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            events = await _opened_on(exchange, opening, rt.settings.first_token_timeout,
                                      self.loop)
        except PromptcastError as exc:
            rt.metrics.error(model if error_label is None else error_label, exc.error_code)
            response = error_response(exc, request_id)
            exchange.respond(response.status_code, [
                header for header in response.raw_headers if header[0] != b"content-length"
            ], bytes(response.body))
            access_log.info("POST %s %d %.1fms", exchange.path, response.status_code,
                            (time.perf_counter() - started) * 1000)
            return
        finally:
            opening.close()  # never started if the client left first
        stream_id = _new_stream_id()
        capture = records.capture(rt, self._client(exchange), stream_id, body)
        relay = Relay(events, rt.limits, stream_id, openai_errors=openai_errors,
                      loop=self.loop, tap=capture.write if capture else None)
        exchange.start(200, [(b"x-stream-id", stream_id.encode()),
                             (b"x-request-id", request_id.encode())], _SSE_HEAD)
        rt.metrics.started(model)
        if relay.can_run_direct():
            stats = await relay.run_direct(exchange, rt.drain)
            exchange.end(relay.last_frame)
        else:
            sink = _ExchangeSink(exchange)

            async def stopped() -> PromptcastError | None:
                return await first_reason(sink.gone, rt.drain.expired())

            try:
                stats = await relay.run(sink, stopped)
            finally:
                sink.close()
            if stats.outcome is Outcome.CANCELLED:
                # The terminal frame may not have gone out: a clean end of the
                # body would pass the stream off as whole. uvicorn closes too.
                exchange.abort()
            else:
                exchange.end()
        _finished(rt, stats, request_id=request_id, path=exchange.path, model=model, mode=mode,
                  capture=capture)

    def _client(self, exchange: Exchange) -> str | None:
        """The client `ApiKeyMiddleware` would have named (only the run recorder asks)."""
        if self._keys is None or self._rt.library is None:
            return None
        matched = matching_key(self._keys, bearer(exchange.headers) or b"")
        return None if matched is None else f"key:{self._owners[matched]}"


class _ExchangeSink:
    """A relay's sink on an exchange, for events that cannot be pushed (the local model)."""

    __slots__ = ("_exchange", "_waiters")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        # The relay's writer, its heartbeats and its watch on the client may
        # all wait at once: the connection's news wakes every one.
        self._waiters: list[asyncio.Future[None]] = []
        exchange.on_gone(self._wake)
        exchange.on_writable(self._wake)

    def close(self) -> None:
        """Stop listening to the exchange."""
        self._exchange.on_gone(None)
        self._exchange.on_writable(None)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def gone(self) -> None:
        """Return once the client has left."""
        while not self._exchange.gone:
            await self._wait()

    async def _write(self, frame: bytes) -> None:
        exchange = self._exchange
        while exchange.paused and not exchange.gone:
            await self._wait()
        if not exchange.write(frame):
            raise OSError("the client is gone")

    async def event(self, seq: int, frame: bytes) -> None:
        await self._write(frame)

    async def terminal(self, seq: int, frame: bytes) -> None:
        await self._write(frame)

    async def heartbeat(self) -> None:
        await self._write(HEARTBEAT)


