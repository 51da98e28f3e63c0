"""Resumable streams: generation detached from the client, readers that replay and tail.

    POST {"resumable": true}
      ├── Producer task (detached) ── Relay ── StoreSink ──▶ store.append(seq, frame)
      │      supervisor: renew lease each second; stop on DELETE (`cancelled`) or
      │      when no reader touched the stream for `resume_grace` s (`abandoned`)
      └── follow(after=0) ◀── store.read() ── the POST's own response
    GET /optimize-stream/<id> (Last-Event-ID: <id>.<n>)
      └── follow(after=n)   replay n+1.., then the live tail, then the terminal frame

A follower that leaves does not stop the producer; a follower that finds the
producer's lease gone (its replica died) ends with `producer_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from promptcast.errors import (
    ProducerLost,
    PromptcastError,
    StoreUnavailable,
    StreamStopped,
    UpstreamError,
    error_payload,
)
from promptcast.relay.drain import Drain
from promptcast.relay.relay import Relay, StreamStats
from promptcast.relay.sink import Conclude, Stopped
from promptcast.relay.streams import Batch, StreamStore
from promptcast.wire import sse

log = logging.getLogger("promptcast.resumable")

# Frames on their way to the store at once before a producer stops reading its
# upstream (and reads again once half of them are stored).
_MAX_UNSTORED = 32
# A terminal frame is small; a store that cannot take it in this long has failed.
_TERMINAL_WRITE_TIMEOUT = 5.0

# How often a producer renews its lease and a reader says it is attached.
RENEW_INTERVAL = 1.0


class StoreSink:
    """A relay's sink into the streams store: one entry per event, numbered; no heartbeats.

    Frames are appended without waiting (`append_nowait`); the store
    acknowledges them later, in order. Past `_MAX_UNSTORED` on their way the
    sink is `paused` (the relay stops reading its upstream) until half are
    stored. A frame the store refuses ends the stream with that error, and
    nothing after it is stored: readers would skip the gap without knowing.
    """

    __slots__ = ("_on_stop", "_on_writable", "_refused", "_store", "_stream_id", "_unstored",
                 "gone", "paused")

    per_event = True
    stall = "the streams store stopped taking the stream"

    def __init__(self, store: StreamStore, stream_id: str) -> None:
        self._store = store
        self._stream_id = stream_id
        self.paused = False
        self.gone = False  # a store does not leave; it fails (`on_stop` with the error)
        self._unstored: set[asyncio.Future[None]] = set()
        self._refused = False
        self._on_stop: Stopped | None = None
        self._on_writable: Callable[[], object] | None = None

    def on_stop(self, callback: Stopped | None) -> None:
        self._on_stop = callback

    def on_writable(self, callback: Callable[[], object] | None) -> None:
        self._on_writable = callback

    def heartbeat(self) -> bool:
        return True  # heartbeats belong to connections

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        if self._refused:
            return True
        seq = first_seq
        try:
            for frame in frames:
                stored = self._store.append_nowait(self._stream_id, seq, frame)
                if stored is not None:
                    self._unstored.add(stored)
                    stored.add_done_callback(self._stored)
                seq += 1
        except PromptcastError as exc:  # past a cap, or the store failed this stream
            self._fail(exc)
        except Exception as exc:
            log.exception("stream %s: storing a frame failed", self._stream_id)
            self._fail(_internal(exc))
        else:
            if len(self._unstored) >= _MAX_UNSTORED:
                self.paused = True  # the store is slower than the upstream
        return True

    def _stored(self, stored: asyncio.Future[None]) -> None:
        self._unstored.discard(stored)
        if stored.cancelled():
            self._fail(StoreUnavailable("the streams store closed"))
            return
        exc = stored.exception()
        if exc is not None:
            self._fail(exc if isinstance(exc, PromptcastError) else _internal(exc))
            return
        if self.paused and len(self._unstored) <= _MAX_UNSTORED // 2:
            self.paused = False
            if self._on_writable is not None:
                self._on_writable()

    def _fail(self, exc: PromptcastError) -> None:
        self._refused = True
        if self._on_stop is not None:
            self._on_stop(exc)

    async def close(self, frames: list[bytes], first_seq: int, conclude: Conclude) -> bool:
        """Store the frames the last read held back once those on their way are, then the
        terminal frame: it must be the last one stored."""
        if self._unstored:
            await asyncio.wait(set(self._unstored))
        seq = first_seq
        try:
            for frame in frames if not self._refused else ():
                await self._store.append(self._stream_id, seq, frame, terminal=False)
                seq += 1
        except PromptcastError as exc:
            self._fail(exc)
        except Exception as exc:
            log.exception("stream %s: storing a frame failed", self._stream_id)
            self._fail(_internal(exc))
        terminal = conclude()
        if terminal is None:
            return False
        frame, number = terminal
        try:
            async with asyncio.timeout(_TERMINAL_WRITE_TIMEOUT):
                await self._store.append(self._stream_id, number, frame, terminal=True)
        except (OSError, TimeoutError, PromptcastError):
            return False
        return True


def _internal(exc: BaseException) -> PromptcastError:
    return UpstreamError(f"internal error: {type(exc).__name__}", code="internal_error")


class Producer:
    """Runs one stream's relay into the store until it ends, whoever is reading."""

    def __init__(self, store: StreamStore, relay: Relay, stream_id: str, *, grace: float,
                 drain: Drain, on_end: Callable[[StreamStats], None]) -> None:
        self._store = store
        self._relay = relay
        self.stream_id = stream_id
        self._grace = grace
        self._drain = drain
        self._on_end = on_end
        self._cancel = asyncio.Event()

    def cancel(self) -> None:
        """Stop now (a DELETE on this replica)."""
        self._cancel.set()

    async def run(self) -> None:
        """Relay the stream into the store, under supervision, until it ends."""
        relay = self._relay

        async def supervise() -> None:
            relay.stop(await self._supervise())

        supervisor = asyncio.get_running_loop().create_task(supervise())
        try:
            # The upstream's reads append to the store themselves: no task per chunk.
            stats = await relay.run(StoreSink(self._store, self.stream_id))
        finally:
            supervisor.cancel()
        self._on_end(stats)

    async def _supervise(self) -> PromptcastError:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RENEW_INTERVAL):
                    await self._cancel.wait()
            if self._cancel.is_set():
                return StreamStopped("the stream was cancelled")
            if self._drain.over:
                # Stored with the stream, so it is final for every reader: no "retry".
                return StreamStopped("the server generating this stream shut down before it "
                                     "finished", code="shutting_down")
            try:
                control = await self._store.renew(self.stream_id)
            except StoreUnavailable as exc:
                return exc
            if control.cancelled:
                return StreamStopped("the stream was cancelled")
            if control.idle_for > self._grace:
                return StreamStopped(
                    f"no client read the stream for {self._grace:g} s", code="abandoned"
                )


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader resumes: after sequence number `after` of `stream_id`."""

    stream_id: str
    after: int


def parse_last_event_id(stream_id: str, value: str | None) -> int:
    """The sequence number in a `Last-Event-ID` of this stream; ValueError says what is wrong."""
    if not value:
        return 0
    owner, dot, seq = value.rpartition(".")
    if not dot or not seq.isdigit():
        raise ValueError(f"Last-Event-ID must look like {stream_id}.<n>, not {value[:80]!r}")
    if owner != stream_id:
        raise ValueError("Last-Event-ID belongs to another stream")
    return int(seq)


Write = Callable[[bytes], Awaitable[None]]


def _frame_for(exc: PromptcastError) -> bytes:
    # No id: this frame is not part of the stored stream, so a client's
    # Last-Event-ID stays on the last real event and a later resume still works.
    return sse.encode(orjson.dumps(error_payload(exc)).decode(), event=exc.sse_event)


async def follow(
    store: StreamStore,
    position: Position,
    write: Write,
    *,
    first: Batch | None,
    heartbeat_interval: float,
    touch_interval: float = RENEW_INTERVAL,
) -> bool:
    """Write the stream after `position` to `write` until its terminal frame; True if reached."""
    loop = asyncio.get_running_loop()
    after = position.after
    last_write = last_touch = loop.time()
    batch = first
    try:
        await store.touch(position.stream_id)
        while True:
            if batch is None:
                wait = max(0.0, min(touch_interval, last_write + heartbeat_interval - loop.time()))
                batch = await store.read(position.stream_id, after, wait)
                if batch is None:
                    await write(_frame_for(ProducerLost("the stream expired while being read")))
                    return False
            frames = batch.frames
            if frames:
                # Frames that came together leave together, in one write.
                await write(frames[0][1] if len(frames) == 1
                            else b"".join(frame for _, frame in frames))
                after = frames[-1][0]
                last_write = loop.time()
            if batch.finished and after >= batch.last_seq:
                return True
            if not batch.frames and not batch.producer_alive:
                await write(_frame_for(ProducerLost(
                    "the server generating this stream stopped before it ended"
                )))
                return False
            now = loop.time()
            if now - last_write >= heartbeat_interval:
                await write(sse.HEARTBEAT)
                last_write = now
            if now - last_touch >= touch_interval:
                await store.touch(position.stream_id)
                last_touch = now
            batch = None
    except StoreUnavailable as exc:
        with contextlib.suppress(OSError):
            await write(_frame_for(exc))
        return False
