"""The client's connection, written directly: for event-stream bodies with no task hop per chunk.

ASGI's `send` is a coroutine: relaying through it costs each chunk a wake-up
of the relay's task and a trip through the server's send. Under `promptcast
serve` (uvicorn with httptools, `server/protocol.py`) a stream's response
writes to the connection instead, from the upstream's own read callback, one
HTTP chunk a write:

- `CycleChannel`: a request the app serves through ASGI; its status, headers
  and the end of its body still go through `send`, so uvicorn keeps its
  bookkeeping (keep-alive, pipelining).
- `Exchange`: a stream start served below ASGI by the door (`server/door.py`):
  the request's head and body, and its whole response, written here.

Any other server has no channel in the scope, and streams go through `send`
(`server/sinks.py`), with the same bytes on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

# Where a request's scope carries its channel (its `extensions`).
DIRECT = "promptcast.direct"

Callback = Callable[[], object]
Headers = list[tuple[bytes, bytes]]


class Owner(Protocol):
    """What an `Exchange` needs of the connection's protocol (`server/protocol.py`)."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    @property
    def default_headers(self) -> Headers:
        """The server's headers for every response (its date)."""

    @property
    def write_paused(self) -> bool: ...

    def on_response_complete(self) -> None: ...


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

    def __init__(self, protocol: Owner, path: str, headers: Headers,
                 keep_alive: bool) -> None:
        super().__init__(protocol.transport, protocol.write_paused)
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
        defaults = self._protocol.default_headers
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


class _Ended:
    # An exchange's protocol once its response is over: nothing left to tell it.
    def on_response_complete(self) -> None:  # pragma: no cover - never called
        pass


_ENDED: Any = _Ended()


def channel_of(scope: Any) -> CycleChannel | None:
    """The scope's `CycleChannel`, if the server offers one."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    channel = extensions.get(DIRECT)
    return channel if isinstance(channel, CycleChannel) else None
