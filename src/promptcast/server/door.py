"""The door below ASGI: plain stream starts served straight from the connection (`protocol.py`).

A stream's start costs more than its chunks, and much of it was ASGI around
it: the request cycle, the scope, the middleware's frames held for the
stream's whole life (docs/benchmarks.md). Under `promptcast serve` the
connection's protocol hands a POST to a stream route here, head and body,
before any of that is built. The door judges it with the same `start.plan`
as the app's routes and serves it with the same `streaming.serve`.

It does what the app's middleware would have done, and no more:

    RequestIdMiddleware   the request id, and its access line on a refusal
    ApiKeyMiddleware      a missing or unknown key goes to the app (its 401/403)

so it stands in only for an app whose middleware is exactly those
(`Door.for_app`). Any other middleware, added in code or switched on by a
setting (CORS, whose headers go on every response; rate limits), and the
door stays closed: every request reaches the app. Anything the door does not
take — a refused start, a resumable one, a non-streamed answer — goes on to
the app with its body, and is answered there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from starlette.applications import Starlette

from promptcast import ids
from promptcast.errors import PromptcastError
from promptcast.ops.auth import ApiKeyMiddleware, bearer, key_client, matching_key, owners
from promptcast.ops.logs import RequestIdMiddleware, log_access, request_id_var, valid_request_id
from promptcast.relay.sink import Sink
from promptcast.server.channels import Exchange, render_headers
from promptcast.server.http import error_response
from promptcast.server.runtime import Runtime
from promptcast.server.sinks import ChannelSink
from promptcast.server.start import START_ROUTES, Head, Kind, NotStarted, Start, plan
from promptcast.server.streaming import SSE_RAW_HEADERS, opened_on, serve
from promptcast.settings import ApiKey

T = TypeVar("T")

# The middleware whose work the door does itself (see the module's docstring).
MIRRORED = frozenset({RequestIdMiddleware, ApiKeyMiddleware})
# The event-stream headers of every start, rendered once.
_SSE_HEAD = render_headers(SSE_RAW_HEADERS)


class Door:
    """Stream starts answered below ASGI, exactly as the app would answer them."""

    def __init__(self, app: Starlette, rt: Runtime, keys: tuple[ApiKey, ...]) -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.max_body = rt.settings.max_body_bytes
        self._rt = rt
        # Each key's digest → the owner it stands for, as ApiKeyMiddleware has them.
        self._owners = owners(keys)
        self._keys = list(self._owners) if keys else None

    @classmethod
    def for_app(cls, app: Starlette, rt: Runtime, keys: tuple[ApiKey, ...]) -> Door | None:
        """A door for `app`, or None when the app has middleware the door does not mirror."""
        mirrored: frozenset[object] = MIRRORED
        if any(middleware.cls not in mirrored for middleware in app.user_middleware):
            return None
        return cls(app, rt, keys)

    def claims(self, path: str) -> bool:
        """Whether a POST to `path` may be a stream start: its body is then kept for `start`."""
        return path in START_ROUTES

    def start(self, exchange: Exchange) -> Coroutine[Any, Any, None] | None:
        """The coroutine serving `exchange`, or None when the app must answer it."""
        client = None
        if self._keys is not None:
            presented = bearer(exchange.headers)
            matched = None if presented is None else matching_key(self._keys, presented)
            if matched is None:
                return None
            client = key_client(self._owners[matched])
        given = (exchange.header(b"x-request-id") or b"").decode("latin-1")
        request_id = given if valid_request_id(given) else ids.request_id()
        key = exchange.header(b"idempotency-key")
        head = Head((exchange.header(b"content-type") or b"").decode("latin-1"),
                    None if key is None else key.decode("latin-1"), client)
        try:
            start = plan(START_ROUTES[exchange.path], head, exchange.body, self._rt, request_id)
        except NotStarted:
            return None  # the app answers with the same error
        if start.kind is not Kind.STREAM:
            return None
        return self._serve(exchange, start, client)

    async def _serve(self, exchange: Exchange, start: Start, client: str | None) -> None:
        # This task's own context: every line logged for the stream names it.
        request_id_var.set(start.request_id)
        await serve(self._rt, start,
                    ExchangeConnection(exchange, self.loop, start.request_id, client))


class ExchangeConnection:
    """`streaming.Connection` for a request served by the door."""

    __slots__ = ("_exchange", "_request_id", "_started", "client", "loop", "path")

    def __init__(self, exchange: Exchange, loop: asyncio.AbstractEventLoop,
                 request_id: str, client: str | None) -> None:
        self._exchange = exchange
        self.loop = loop
        self.client = client
        self.path = exchange.path
        self._request_id = request_id
        self._started = time.perf_counter()

    def opened(self, opening: Awaitable[T], limit: float) -> Coroutine[Any, Any, T]:
        return opened_on(self._exchange, opening, limit, self.loop)

    async def refuse(self, exc: PromptcastError) -> None:
        response = error_response(exc, self._request_id)
        self._exchange.respond(response.status_code, [
            header for header in response.raw_headers if header[0] != b"content-length"
        ], bytes(response.body))
        log_access("POST", self.path, response.status_code, self._started)

    async def start(self, headers: list[tuple[bytes, bytes]]) -> Sink:
        exchange = self._exchange
        exchange.start(200, headers, _SSE_HEAD)
        return ChannelSink(exchange, self._end)

    async def _end(self, last: bytes, whole: bool) -> None:
        if whole:
            self._exchange.end(last)
        else:
            # The terminal frame may not have gone out: a clean end of the body
            # would pass the stream off as whole.
            self._exchange.abort()

    def logged(self) -> None:
        """The door writes no access line for a stream: its own line says it all."""
