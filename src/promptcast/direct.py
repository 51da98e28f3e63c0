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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

DIRECT = "promptcast.direct"

Callback = Callable[[], object]


class DirectChannel:
    """One request's connection: write body chunks synchronously, hear when it drains or drops."""

    __slots__ = ("_cycle", "_on_gone", "_on_writable", "_paused", "_transport", "gone")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        # Kept here by the protocol, not read from uvicorn's flow control: one
        # object fewer to touch per chunk.
        self._paused = cycle.flow.write_paused
        self.gone = False
        self._on_gone: Callback | None = None
        self._on_writable: Callback | None = None

    @property
    def ready(self) -> bool:
        """True while the response has started with a chunked body and not ended."""
        cycle = self._cycle
        return (cycle.response_started and cycle.chunked_encoding is True
                and not cycle.response_complete and cycle.scope["method"] != "HEAD")

    @property
    def paused(self) -> bool:
        """The client is not reading fast enough: stop producing until `on_writable` fires."""
        return self._paused

    def write(self, frame: bytes) -> bool:
        """Write `frame` as one HTTP chunk; False if the client is gone."""
        if self.gone or self._transport.is_closing():
            return False
        self._transport.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        return True

    def on_gone(self, callback: Callback | None) -> None:
        """Call `callback` (once) when the client disconnects; None unsubscribes."""
        self._on_gone = callback

    def on_writable(self, callback: Callback | None) -> None:
        """Call `callback` when a paused connection can take writes again; None unsubscribes."""
        self._on_writable = callback

    def _detach(self) -> None:
        # The scope holds the channel and the channel the cycle, which holds the
        # scope: break that loop so a finished request is freed at once, not
        # at the next full garbage collection.
        extensions = self._cycle.scope.get("extensions")
        if extensions is not None:
            extensions.pop(DIRECT, None)

    def _lost(self) -> None:
        self.gone = True
        self._paused = False
        self._detach()
        callback, self._on_gone = self._on_gone, None
        self._on_writable = None
        if callback is not None:
            callback()

    def _resumed(self) -> None:
        self._paused = False
        callback = self._on_writable
        if callback is not None:
            callback()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering each request a `DirectChannel` in its scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Requests of this connection whose responses may still be running
        # (more than one only when the client pipelines).
        self._channels: list[DirectChannel] = []

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: no cycle was made for this request
        channels = []
        for channel in self._channels:
            if channel._cycle.response_complete:
                channel._detach()
            else:
                channels.append(channel)
        self._channels = channels
        channel = DirectChannel(cycle)
        self._channels.append(channel)
        # The ASGI task starts on a later loop turn, so it sees the extension.
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DIRECT] = channel

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        channels, self._channels = self._channels, []
        for channel in channels:
            channel._lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        for channel in self._channels:
            channel._paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        for channel in self._channels:
            channel._resumed()


def channel_of(scope: Any) -> DirectChannel | None:
    """The scope's `DirectChannel`, if the server offers one."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    channel = extensions.get(DIRECT)
    return channel if isinstance(channel, DirectChannel) else None

