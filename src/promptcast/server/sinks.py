"""A relay's sink on a client's connection (`relay/sink.py`): written directly, or through `send`.

- `ChannelSink`: the connection itself takes each write (`channels.py`), from
  the upstream's read callback; the response's end goes its own way (`Ender`).
- `SendSink`: any other ASGI server: a task sends what was written, in order.

Both bytes on the wire are the same; tests/test_sinks.py compares them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.types import Receive, Send

from promptcast.errors import PromptcastError
from promptcast.relay.sink import Conclude, Stopped
from promptcast.server.channels import DirectChannel
from promptcast.wire.sse import HEARTBEAT

# A client that cannot take the last frames in this long is gone.
FINAL_WRITE_TIMEOUT = 5.0
_STALL = "the client stopped reading the stream"
# Bytes queued for `send` before a `SendSink` says it is paused, and when it resumes.
_SEND_HIGH = 64 * 1024


class Ender(Protocol):
    """How a response's body ends: with `last` as its final bytes, or cut (not whole)."""

    def __call__(self, last: bytes, whole: bool) -> Awaitable[None]: ...


class ChannelSink:
    """Frames written straight to the client's connection, inside the upstream's callbacks."""

    __slots__ = ("_channel", "_end", "_on_stop", "_on_writable")

    per_event = False
    stall = _STALL

    def __init__(self, channel: DirectChannel, end: Ender) -> None:
        self._channel = channel
        self._end = end
        self._on_stop: Stopped | None = None
        self._on_writable: Callable[[], object] | None = None

    @property
    def paused(self) -> bool:
        return self._channel.paused

    @property
    def gone(self) -> bool:
        return self._channel.gone

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        return self._channel.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def heartbeat(self) -> bool:
        return self._channel.write(HEARTBEAT)

    def on_stop(self, callback: Stopped | None) -> None:
        self._on_stop = callback
        self._channel.on_gone(None if callback is None else self._lost)

    def on_writable(self, callback: Callable[[], object] | None) -> None:
        self._on_writable = callback
        self._channel.on_writable(callback)

    def _lost(self) -> None:
        _tell_lost(self._on_writable, self._on_stop)

    async def close(self, frames: list[bytes], first_seq: int, conclude: Conclude) -> bool:
        channel = self._channel
        terminal = conclude()
        if terminal is None or channel.gone:
            await self._end(b"", False)
            return False
        last = b"".join((*frames, terminal[0]))
        if channel.paused:
            # The response's own end waits for the client to drain (and gives
            # up after a while); the frames must not wait with it.
            delivered = channel.write(last)
            await self._end(b"", delivered)
            return delivered
        # With the end of the body: one write for all of it.
        await self._end(last, True)
        return True


class SendSink:
    """Frames sent through ASGI `send` by a task, in order; the client's leaving heard on
    `receive`. For servers that offer no channel."""

    per_event = False
    stall = _STALL

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._queue: list[bytes] = []
        self._queued = 0
        self.paused = False
        self.gone = False
        self._on_stop: Stopped | None = None
        self._on_writable: Callable[[], object] | None = None
        loop = asyncio.get_running_loop()
        self._writer: asyncio.Task[None] | None = None
        self._watch = loop.create_task(self._watch_disconnect(receive))

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        if self.gone:
            return False
        body = frames[0] if len(frames) == 1 else b"".join(frames)
        self._queue.append(body)
        self._queued += len(body)
        if self._queued > _SEND_HIGH:
            self.paused = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return True

    def heartbeat(self) -> bool:
        return self.write([HEARTBEAT], 0)

    def on_stop(self, callback: Stopped | None) -> None:
        self._on_stop = callback

    def on_writable(self, callback: Callable[[], object] | None) -> None:
        self._on_writable = callback

    async def _drain(self) -> None:
        try:
            while self._queue:
                body = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                await self._send({"type": "http.response.body", "body": body, "more_body": True})
                if self.paused and self._queued <= _SEND_HIGH:
                    self.paused = False
                    if self._on_writable is not None:
                        self._on_writable()
        except OSError:
            self._lost()

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._lost()

    def _lost(self) -> None:
        if self.gone:
            return
        self.gone = True
        self.paused = False
        _tell_lost(self._on_writable, self._on_stop)

    async def close(self, frames: list[bytes], first_seq: int, conclude: Conclude) -> bool:
        self._watch.cancel()
        terminal = conclude()
        delivered = False
        try:
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                if self._writer is not None:
                    await self._writer  # what went before, in order
                last = b"" if terminal is None or self.gone else b"".join((*frames, terminal[0]))
                await self._send({"type": "http.response.body", "body": last,
                                  "more_body": False})
                delivered = bool(last)
        except (OSError, TimeoutError, PromptcastError):
            delivered = False
        finally:
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        return delivered


def _tell_lost(writable: Callable[[], object] | None, stop: Stopped | None) -> None:
    """The client left: a writer waiting for it to drain must hear of it too, then the relay."""
    if writable is not None:
        writable()
    if stop is not None:
        stop(None)


def ended_by_send(send: Send) -> Ender:
    """The `Ender` of a response whose status went through `send`: its end does too."""

    async def end(last: bytes, whole: bool) -> None:
        # Bounded: a client that stopped reading would otherwise hold this forever.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                await send({"type": "http.response.body", "body": last, "more_body": False})

    return end
