"""The client's connection, for event-stream bodies written without a task hop per chunk.

ASGI's `send` is a coroutine: relaying through it costs each chunk a wake-up
of the relay's task and a trip through the server's send (about 11 µs of the
26 µs a chunk cost; docs/benchmarks.md). Under `promptcast serve` (uvicorn
with httptools) the scope carries a `DirectChannel` instead: once the response
has started, the relay writes each event, from the upstream's own read
callback, straight to the socket as one HTTP chunk. Status, headers and the
end of the body still go through `send`, so uvicorn keeps its bookkeeping
(keep-alive, pipelining, the access log). Any other server has no channel in
the scope and the relay uses `send`, with the same bytes on the wire.

A stream's start costs more than its chunks, and most of that start was ASGI
around it: the request cycle, the scope, the middleware's suspended frames
held for the stream's whole life. So the protocol can also hand a request to
a `StreamRoutes` (api's `FastStreams`) below ASGI, as an `Exchange`: the
request's head and body, and its response written straight to the transport.
The routes take only what they serve exactly as the app would (a plain stream
start that passes every check); anything else, and every request a check
refuses, goes on to the app as an ordinary request, body included. What fails
once the stream is opening (the upstream refuses, the first token is late)
the routes answer themselves, with the app's error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import httptools
import uvicorn
from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

DIRECT = "promptcast.direct"
# Where the lifespan state keeps the routes served below ASGI.
STREAM_ROUTES = "promptcast.stream_routes"

Callback = Callable[[], object]
Headers = list[tuple[bytes, bytes]]

log = logging.getLogger("promptcast.direct")
# The app's access log (logs.py, which cannot be imported from here).
access_log = logging.getLogger("promptcast.access")
# uvicorn's, as every connection of its httptools protocol has them.
_UVICORN_ERROR = logging.getLogger("uvicorn.error")
_UVICORN_ACCESS = logging.getLogger("uvicorn.access")
# The uvicorn releases whose `HttpToolsProtocol.__init__` `HttpProtocol`'s
# copies (checked by tests/test_direct.py); under any other, it calls uvicorn's.
_INIT_COPIED_FROM = frozenset({"0.55.0"})
_COPIED_INIT = uvicorn.__version__ in _INIT_COPIED_FROM


class DirectChannel:
    """A response's connection: write body chunks synchronously, hear when it drains or drops."""

    __slots__ = ("_on_gone", "_on_writable", "_transport", "_unsent", "gone", "paused")

    def __init__(self, transport: asyncio.Transport, paused: bool) -> None:
        self._transport = transport
        # The client is not reading fast enough: stop producing until
        # `on_writable` fires. Kept here by the protocol, not read from
        # uvicorn's flow control (one object fewer to touch per chunk); a
        # plain attribute, read per chunk: no property call. Read-only to users.
        self.paused = paused
        self.gone = False
        # A response head not written yet: it goes with the first write (see
        # `Exchange.start`).
        self._unsent = b""
        self._on_gone: Callback | None = None
        self._on_writable: Callback | None = None

    @property
    def done(self) -> bool:
        """The response has ended: the protocol may forget this channel."""
        raise NotImplementedError

    def write(self, frame: bytes) -> bool:
        """Write `frame` as one HTTP chunk; False if the client is gone."""
        if self.gone or self._transport.is_closing():
            return False
        if self._unsent:
            self._transport.write(b"%s%x\r\n%s\r\n" % (self._unsent, len(frame), frame))
            self._unsent = b""
        else:
            self._transport.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        return True

    def on_gone(self, callback: Callback | None) -> None:
        """Call `callback` (once) when the client disconnects; None unsubscribes."""
        self._on_gone = callback

    def on_writable(self, callback: Callback | None) -> None:
        """Call `callback` when a paused connection can take writes again; None unsubscribes."""
        self._on_writable = callback

    def _detach(self) -> None:
        """Drop what ties this channel to its request, once the response is over."""

    def _lost(self) -> None:
        self.gone = True
        self.paused = False
        self._detach()
        callback, self._on_gone = self._on_gone, None
        self._on_writable = None
        if callback is not None:
            callback()

    def _resumed(self) -> None:
        self.paused = False
        callback = self._on_writable
        if callback is not None:
            callback()


class CycleChannel(DirectChannel):
    """The channel of a request served through ASGI: uvicorn's cycle writes head and end."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        super().__init__(cycle.transport, cycle.flow.write_paused)
        self._cycle = cycle

    @property
    def ready(self) -> bool:
        """True while the response has started with a chunked body and not ended."""
        cycle = self._cycle
        return (cycle.response_started and cycle.chunked_encoding is True
                and not cycle.response_complete and cycle.scope["method"] != "HEAD")

    @property
    def done(self) -> bool:
        return bool(self._cycle.response_complete)

    def _detach(self) -> None:
        # The scope holds the channel and the channel the cycle, which holds the
        # scope: break that loop so a finished request is freed at once, not
        # at the next full garbage collection.
        extensions = self._cycle.scope.get("extensions")
        if extensions is not None:
            extensions.pop(DIRECT, None)


class _NoEvent:
    # uvicorn's protocol sets its cycle's `message_event` on disconnect; an
    # exchange hears of that through `_lost` and needs no event of its own.
    @staticmethod
    def set() -> None:
        pass


class Exchange(DirectChannel):
    """A request served below ASGI: its head and body, and its response's writes.

    It stands in the protocol's `cycle` slot while it runs, so uvicorn's own
    code queues a pipelined request behind it and keeps the connection open
    for it at shutdown.
    """

    __slots__ = ("_by_name", "_protocol", "body", "disconnected", "headers", "keep_alive",
                 "path", "response_complete", "response_started")

    message_event = _NoEvent()

    def __init__(self, protocol: HttpProtocol, path: str, headers: Headers,
                 keep_alive: bool) -> None:
        super().__init__(protocol.transport, protocol.flow.write_paused)
        self._protocol = protocol
        self.path = path
        self.headers = headers
        self._by_name: dict[bytes, bytes] | None = None
        self.body = bytearray()
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False

    @property
    def done(self) -> bool:
        return self.response_complete

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower case), or None."""
        by_name = self._by_name
        if by_name is None:
            # One pass in C for the few headers a start asks for; reversed, so
            # the first of a repeated header wins.
            by_name = self._by_name = dict(reversed(self.headers))
        return by_name.get(name)

    def start(self, status: int, headers: Headers, rendered: bytes = b"") -> None:
        """Start a chunked response: its status line and headers (and `rendered`, more header
        lines as `render_headers` makes them) leave with the first write, or on the next turn
        of the event loop, whichever comes first."""
        self.response_started = True
        if not self.gone and not self._transport.is_closing():
            # A stream's first events are often in hand already: one write and
            # one packet for head and events, not two (benchmarks.md).
            self._unsent = self._head(status, headers, b"transfer-encoding: chunked\r\n",
                                      rendered)
            self._protocol.loop.call_soon(self._send_head)

    def _send_head(self) -> None:
        if self._unsent and not self.gone and not self._transport.is_closing():
            self._transport.write(self._unsent)
        self._unsent = b""

    def end(self, last: bytes = b"") -> None:
        """End the chunked body, with `last` as its final chunk."""
        if self.response_complete:
            return
        if not self.gone and not self._transport.is_closing():
            self._transport.write(b"%s%x\r\n%s\r\n0\r\n\r\n" % (self._unsent, len(last), last)
                                  if last else self._unsent + b"0\r\n\r\n")
        self._unsent = b""
        self._complete()

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Write a whole response with `body`, and end it."""
        self.response_started = True
        if not self.gone and not self._transport.is_closing():
            self._transport.write(
                self._head(status, headers, b"content-length: %d\r\n" % len(body)) + body)
        self._complete()

    def abort(self) -> None:
        """Drop the connection: the response cannot be ended properly."""
        self._unsent = b""
        self._transport.close()
        self._complete()

    def _head(self, status: int, headers: Headers, framing: bytes, rendered: bytes = b"") -> bytes:
        defaults = self._protocol.server_state.default_headers
        cached = _defaults.pair
        if cached[0] is not defaults:
            # uvicorn makes a new list when its date header changes: once a
            # second. One store of list and bytes together: servers on other
            # threads of this process share the cache.
            cached = _defaults.pair = (defaults, render_headers(defaults))
        return b"%s%s%s%s%s%s\r\n" % (
            STATUS_LINE[status], cached[1], rendered, render_headers(headers), framing,
            b"" if self.keep_alive else b"connection: close\r\n")

    def _complete(self) -> None:
        self.response_complete = True
        protocol, self._protocol = self._protocol, _ENDED
        if protocol is _ENDED:
            return
        if not self.keep_alive:
            self._transport.close()
        protocol.on_response_complete()


def render_headers(headers: Headers | tuple[tuple[bytes, bytes], ...]) -> bytes:
    """`headers` as the lines of a response head."""
    return b"".join([b"%s: %s\r\n" % header for header in headers])


class _RenderedDefaults:
    # A server's default headers (the date) as last rendered, for every
    # response head of the same second.
    pair: tuple[Headers | None, bytes] = (None, b"")


_defaults = _RenderedDefaults()


class StreamRoutes(Protocol):
    """Routes the protocol can serve below ASGI (see the module's docstring)."""

    max_body: int
    loop: asyncio.AbstractEventLoop  # the server's

    def claims(self, path: str) -> bool:
        """Whether a POST to `path` may be one of ours: its body is then kept for `start`."""

    def start(self, exchange: Exchange) -> Coroutine[Any, Any, None] | None:
        """The coroutine that serves `exchange`, or None to leave it to the app."""


class _Ended:
    # An exchange's protocol once its response is over: nothing left to tell it.
    def on_response_complete(self) -> None:  # pragma: no cover - never called
        pass


_ENDED: Any = _Ended()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: a `DirectChannel` per scope; stream routes below ASGI."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        routes: StreamRoutes | None = app_state.get(STREAM_ROUTES)
        # uvicorn passes no loop, so each connection would look it up: on
        # Python 3.11 a getpid() system call per lookup.
        loop = _loop or (routes.loop if routes is not None else None)
        if not _COPIED_INIT:
            super().__init__(config, server_state, app_state, _loop=loop)
            self._channels: list[DirectChannel] = []
            self._addressed = False
            return
        # uvicorn's own `__init__`, less the two loggers it looks up again for
        # every connection (a lock and a dict each). tests/test_direct.py holds
        # this to uvicorn's, attribute by attribute.
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = loop or asyncio.get_event_loop()
        self.logger = _UVICORN_ERROR
        self.access_logger = _UVICORN_ACCESS
        self.access_log = _UVICORN_ACCESS.hasHandlers()
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3 has no leniencies
            # As uvicorn: the first of pipelined requests can still be answered.
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.ws_protocol_class = config.ws_protocol_class
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.limit_concurrency = config.limit_concurrency
        self.app_state = app_state
        self.timeout_keep_alive_task = None
        self.timeout_keep_alive = config.timeout_keep_alive
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.transport = None  # type: ignore[assignment]
        self.flow = None  # type: ignore[assignment]
        self.server = None
        self.client = None
        self.scheme = None
        self.pipeline = deque()
        self.scope = None  # type: ignore[assignment]
        self.headers = None  # type: ignore[assignment]
        self.expect_100_continue = False
        self.cycle = None  # type: ignore[assignment]
        # Requests of this connection whose responses may still be running
        # (more than one only when the client pipelines).
        self._channels = []
        self._addressed = False

    # A stream served below ASGI needs no scope and no addresses. uvicorn
    # builds both for every request and looks the addresses up for every
    # connection (two system calls and two socket objects); here they are
    # made only when the app is to see a request.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        if self.logger.level <= TRACE_LOG_LEVEL:
            self._address()
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", prefix)

    def _address(self) -> None:
        if not self._addressed:
            self._addressed = True
            self.server = get_local_addr(self.transport)
            self.client = get_remote_addr(self.transport)

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def _new_scope(self) -> None:
        """The scope uvicorn's `on_message_begin` would have made for this request."""
        self._address()
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def _keep(self, channel: DirectChannel) -> None:
        channels = []
        for kept in self._channels:
            if kept.done:
                kept._detach()
            else:
                channels.append(kept)
        channels.append(channel)
        self._channels = channels

    def on_headers_complete(self) -> None:
        exchange = self._claim()
        if exchange is not None:
            self.cycle = exchange  # type: ignore[assignment]
            self._keep(exchange)
            return
        self._new_scope()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: no cycle was made for this request
        channel = CycleChannel(cycle)
        self._keep(channel)
        # The ASGI task starts on a later loop turn, so it sees the extension.
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DIRECT] = channel

    def _claim(self) -> Exchange | None:
        """An `Exchange` for this request if the stream routes may serve it, else None."""
        routes: StreamRoutes | None = self.app_state.get(STREAM_ROUTES)
        parser = self.parser
        if (routes is None or parser.get_method() != b"POST" or self.expect_100_continue
                or self.root_path or self.limit_concurrency is not None
                or (self.cycle is not None and not self.cycle.response_complete)
                or parser.should_upgrade()):
            return None
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path or not routes.claims(path):
            return None
        for name, value in self.headers:
            # Refused at once by the app, before the body is sent.
            if name == b"content-length" and (not value.isdigit()
                                              or int(value) > routes.max_body):
                return None
        return Exchange(self, path, self.headers, keep_alive=(
            parser.get_http_version() != "1.0" and parser.should_keep_alive()))

    def on_body(self, body: bytes) -> None:
        exchange: object = self.cycle
        if not isinstance(exchange, Exchange):
            super().on_body(body)
            return
        exchange.body += body
        routes: StreamRoutes = self.app_state[STREAM_ROUTES]
        if len(exchange.body) > routes.max_body:
            self._to_app(exchange, more_body=True)  # the app refuses it, as it always has

    def on_message_complete(self) -> None:
        exchange: object = self.cycle
        if not isinstance(exchange, Exchange):
            super().on_message_complete()
            return
        routes: StreamRoutes = self.app_state[STREAM_ROUTES]
        try:
            serve = routes.start(exchange)
        except Exception:
            log.exception("the stream routes failed on a request; the app takes it")
            serve = None
        if serve is None:
            self._to_app(exchange, more_body=False)
            return
        exchange.body.clear()  # parsed: not kept for the stream's life
        if self.config.reset_contextvars:  # as uvicorn's own `_start_asgi_task`
            task = self.loop.create_task(self._serve(exchange, serve),
                                         context=contextvars.Context())
        else:
            task = self.loop.create_task(self._serve(exchange, serve))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _serve(self, exchange: Exchange, serve: Coroutine[Any, Any, None]) -> None:
        # What uvicorn's `run_asgi` does for an app: a failure (a cancel at
        # shutdown too) is logged and answered with a 500, or the connection
        # dropped if the response began.
        started = time.perf_counter()
        try:
            await serve
        except BaseException as exc:
            log.error("a stream failed", exc_info=exc)
            if not exchange.response_started:
                exchange.keep_alive = False
                exchange.respond(500, [(b"content-type", b"text/plain; charset=utf-8")],
                                 b"Internal Server Error")
                access_log.info("POST %s 500 %.1fms", exchange.path,
                                (time.perf_counter() - started) * 1000)
            else:
                exchange.abort()
        else:
            if not exchange.response_complete:
                exchange.abort()

    def _to_app(self, exchange: Exchange, *, more_body: bool) -> None:
        """Hand a claimed request to the app as uvicorn would have, with the body read so far."""
        self._new_scope()
        scope = self.scope
        scope["method"] = "POST"
        http_version = self.parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        parsed = httptools.parse_url(self.url)
        scope["path"] = exchange.path
        scope["raw_path"] = parsed.path
        scope["query_string"] = parsed.query or b""
        cycle = RequestResponseCycle(
            scope=self.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=exchange.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.body = exchange.body
        cycle.more_body = more_body
        cycle.message_event.set()  # what uvicorn's on_body does: the body is there to read
        self.cycle = cycle
        channel = CycleChannel(cycle)
        self._channels = [c for c in self._channels if c is not exchange]
        self._keep(channel)
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DIRECT] = channel
        self._start_asgi_task(cycle, self.app)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        cycle: object = self.cycle
        if isinstance(cycle, Exchange):
            # Nothing to tell this connection any more; and a request whose
            # body never came in full would otherwise keep a loop through it.
            cycle._protocol = _ENDED
        channels, self._channels = self._channels, []
        for channel in channels:
            channel._lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        for channel in self._channels:
            channel.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        for channel in self._channels:
            channel._resumed()


def channel_of(scope: Any) -> CycleChannel | None:
    """The scope's `CycleChannel`, if the server offers one."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    channel = extensions.get(DIRECT)
    return channel if isinstance(channel, CycleChannel) else None
