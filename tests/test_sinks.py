"""A relay's sinks on a client's connection (`server/sinks.py`): the bytes each hands on."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from promptcast.relay.sink import writable
from promptcast.server import sinks
from promptcast.server.sinks import ChannelSink, SendSink
from promptcast.wire.sse import HEARTBEAT

pytestmark = pytest.mark.anyio

TERMINAL = (b"id: s.3\ndata: [DONE]\n\n", 3)


class Channel:
    """Stands in for the connection (`channels.DirectChannel`): records writes; can pause or go."""

    def __init__(self) -> None:
        self.paused = False
        self.gone = False
        self.written: list[bytes] = []
        self._on_gone: Any = None
        self._on_writable: Any = None

    def write(self, frame: bytes) -> bool:
        if self.gone:
            return False
        self.written.append(frame)
        return True

    def on_gone(self, callback: Any) -> None:
        self._on_gone = callback

    def on_writable(self, callback: Any) -> None:
        self._on_writable = callback

    def lose(self) -> None:
        self.gone, self.paused = True, False
        if self._on_gone is not None:
            self._on_gone()


class Ends:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool]] = []

    async def __call__(self, last: bytes, whole: bool) -> None:
        self.calls.append((last, whole))


async def test_a_channel_sink_writes_a_reads_frames_in_one_write() -> None:
    channel = Channel()
    sink = ChannelSink(channel, Ends())  # type: ignore[arg-type]
    assert sink.write([b"a\n\n", b"b\n\n"], 1) and sink.heartbeat()
    assert channel.written == [b"a\n\nb\n\n", HEARTBEAT]


async def test_a_channel_sink_ends_with_the_held_frames_and_the_terminal_in_one_piece() -> None:
    channel, ends = Channel(), Ends()
    sink = ChannelSink(channel, ends)  # type: ignore[arg-type]
    assert await sink.close([b"a\n\n"], 2, lambda: TERMINAL)
    assert channel.written == [] and ends.calls == [(b"a\n\n" + TERMINAL[0], True)]


async def test_a_paused_client_gets_the_terminal_written_at_once_before_the_end() -> None:
    channel, ends = Channel(), Ends()
    channel.paused = True
    sink = ChannelSink(channel, ends)  # type: ignore[arg-type]
    assert await sink.close([b"a\n\n"], 2, lambda: TERMINAL)
    assert channel.written == [b"a\n\n" + TERMINAL[0]] and ends.calls == [(b"", True)]


async def test_a_gone_client_gets_no_terminal_and_a_cut_end() -> None:
    channel, ends = Channel(), Ends()
    sink = ChannelSink(channel, ends)  # type: ignore[arg-type]
    channel.lose()
    assert not sink.write([b"a\n\n"], 1)
    assert not await sink.close([], 1, lambda: TERMINAL)
    assert channel.written == [] and ends.calls == [(b"", False)]


async def test_losing_the_channel_stops_the_relay_and_wakes_a_waiting_writer() -> None:
    channel = Channel()
    sink = ChannelSink(channel, Ends())  # type: ignore[arg-type]
    stops: list[object] = []
    sink.on_stop(stops.append)
    channel.paused = True
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            async def wait() -> None:
                with pytest.raises(OSError):
                    await writable(sink)

            tg.start_soon(wait)
            await anyio.lowlevel.checkpoint()
            channel.lose()
    assert stops == [None]


class Sent:
    """ASGI `send` and `receive`: records messages; `block` holds every send until set."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.block = asyncio.Event()
        self.block.set()
        self.disconnect = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        await self.block.wait()
        self.messages.append(message)

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages]


async def test_a_send_sink_sends_in_order_and_ends_with_the_terminal() -> None:
    io = Sent()
    sink = SendSink(io.send, io.receive)  # type: ignore[arg-type]
    assert sink.write([b"a\n\n", b"b\n\n"], 1) and sink.heartbeat()
    with anyio.fail_after(2):
        assert await sink.close([b"c\n\n"], 3, lambda: TERMINAL)
    assert b"".join(io.bodies()) == b"a\n\nb\n\n" + HEARTBEAT + b"c\n\n" + TERMINAL[0]
    assert io.messages[-1]["more_body"] is False
    assert all(m["more_body"] for m in io.messages[:-1])


async def test_a_send_sink_pauses_while_its_client_lags_and_says_when_it_caught_up() -> None:
    io = Sent()
    io.block.clear()
    sink = SendSink(io.send, io.receive)  # type: ignore[arg-type]
    woken = asyncio.Event()
    sink.on_writable(woken.set)
    big = b"x" * (sinks._SEND_HIGH + 1)
    sink.write([big], 1)
    await anyio.lowlevel.checkpoint()
    sink.write([big], 2)
    assert sink.paused
    io.block.set()
    with anyio.fail_after(2):
        await woken.wait()
    assert not sink.paused


async def test_a_send_sink_hears_the_client_leave() -> None:
    io = Sent()
    sink = SendSink(io.send, io.receive)  # type: ignore[arg-type]
    stops: list[object] = []
    sink.on_stop(stops.append)
    io.disconnect.set()
    with anyio.fail_after(2):
        while not sink.gone:
            await anyio.lowlevel.checkpoint()
    assert stops == [None] and not sink.write([b"a\n\n"], 1)
    assert not await sink.close([], 1, lambda: TERMINAL)


async def test_a_client_that_never_reads_does_not_hold_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "FINAL_WRITE_TIMEOUT", 0.05)
    io = Sent()
    io.block.clear()
    sink = SendSink(io.send, io.receive)  # type: ignore[arg-type]
    sink.write([b"a\n\n"], 1)
    with anyio.fail_after(2):
        assert not await sink.close([], 2, lambda: TERMINAL)
