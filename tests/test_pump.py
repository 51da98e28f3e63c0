"""Push mode for an iterated source (`wire/pump.py`): every event, in order, and a clean close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from promptcast.errors import UpstreamError
from promptcast.wire.pump import Pump
from promptcast.wire.sse import DONE, Event

pytestmark = pytest.mark.anyio


class Listener:
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.ended = asyncio.Event()
        self.flushed = asyncio.Event()

    async def until(self, condition: Any) -> None:
        """Wait for `condition()`, checked after each flush."""
        while not condition():
            self.flushed.clear()
            await self.flushed.wait()

    def event(self, event: Event) -> None:
        self.got.append(event.data)

    def data(self, payload: bytes) -> None:  # pragma: no cover - a pump hands events only
        raise AssertionError

    def plain(self, run: Any) -> None:  # pragma: no cover
        raise AssertionError

    def flush(self) -> None:
        self.got.append("flush")
        self.flushed.set()

    def end(self, error: Any) -> None:
        self.got.append(("end", type(error).__name__))
        self.ended.set()


async def test_each_event_is_flushed_and_nothing_is_read_past_the_end() -> None:
    read: list[str] = []

    async def source() -> AsyncIterator[Event]:
        for data in ("a", "b", "[DONE]", "after"):
            read.append(data)
            yield DONE if data == "[DONE]" else Event(data)

    listener = Listener()
    pump = Pump(source())
    pump.push(listener)
    with anyio.fail_after(2):
        await listener.until(lambda: "[DONE]" in listener.got)
    await pump.aclose()
    assert listener.got == ["a", "flush", "b", "flush", "[DONE]", "flush"]
    assert read == ["a", "b", "[DONE]"]


async def test_a_source_that_stops_short_or_fails_ends_the_stream() -> None:
    async def short() -> AsyncIterator[Event]:
        yield Event("a")

    async def failing() -> AsyncIterator[Event]:
        yield Event("a")
        raise UpstreamError("gone", code="upstream_closed")

    for source, end in ((short(), ("end", "NoneType")), (failing(), ("end", "UpstreamError"))):
        listener = Listener()
        pump = Pump(source)
        pump.push(listener)
        with anyio.fail_after(2):
            await listener.ended.wait()
        assert listener.got == ["a", "flush", end]
        await pump.aclose()


async def test_closing_a_paused_pump_closes_its_source_at_once() -> None:
    closed = asyncio.Event()
    yielded = asyncio.Event()

    async def source() -> AsyncIterator[Event]:
        try:
            while True:
                yielded.set()
                yield Event("x")
                await asyncio.sleep(0)
        finally:
            closed.set()  # a generator's own clean-up: where a model's thread is stopped

    listener = Listener()
    pump = Pump(source())
    pump.push(listener)
    with anyio.fail_after(2):
        await listener.until(lambda: bool(listener.got))
        pump.pause()
        yielded.clear()
        await yielded.wait()  # one more event taken: the pump now waits, outside the source
    await pump.aclose()
    assert closed.is_set()  # not left for the garbage collector


async def test_a_caller_cancelled_while_closing_stays_cancelled() -> None:
    never = asyncio.Event()

    async def source() -> AsyncIterator[Event]:
        try:
            yield Event("x")
            await never.wait()
        finally:
            await asyncio.sleep(0.05)  # a clean-up that takes a moment

    pump = Pump(source())
    pump.push(Listener())
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(pump.aclose())
    await asyncio.sleep(0)
    closing.cancel()  # e.g. the server ends the request's task at shutdown
    with anyio.fail_after(2), pytest.raises(asyncio.CancelledError):
        await closing
