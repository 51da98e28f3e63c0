"""One stream's life: relay events, keep the connection alive, enforce limits, end exactly once.

    run() ── the main task pumps events: upstream ──▶ frame ──▶ sink.event()
      ├── ticker task: heartbeat after `heartbeat_interval` of silence;
      │                at a first-token / idle / total deadline it records a
      │                timeout and cancels the main task
      └── watch task:  `stopped()` returned: None means the client is gone,
                       an error means "end the stream with this" (a DELETE,
                       no reader for the grace period); cancels the main task

The main task always closes the upstream (`events.aclose()`), then hands the
sink the one terminal frame: the upstream's own `[DONE]`/error/timeout, or ours
for a timeout or an error raised mid-stream; none when the client is gone.
The sink is the client's connection, or a streams store for resumable streams.

    run_direct() ── the same life with no task per chunk, for a client
                    connection that takes writes directly (`direct.py`) and
                    an upstream that pushes (`source.PushEvents`): the events
                    of one upstream read are framed and written, in one write,
                    inside that read's callback (those of the read that ends
                    the stream go with the terminal frame and the end of the
                    body instead);
                    one timer does heartbeats and deadlines; the client's
                    leaving and the drain arrive as callbacks; the task only
                    waits for the end, closes the upstream, and hands back the
                    terminal frame to go out with the end of the body.

    run_stored() ── the same, for a resumable stream's producer: each read's
                    frames go to the streams store from that read's callback,
                    without waiting; the upstream pauses while too many are
                    unacknowledged, and the terminal frame is stored last.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import orjson

from promptcast.errors import (
    PromptcastError,
    StoreUnavailable,
    StreamTimeout,
    UpstreamError,
    error_payload,
)
from promptcast.relay.drain import Drain
from promptcast.relay.source import EventStream, PushEvents
from promptcast.wire import scan, sse

log = logging.getLogger("promptcast.relay")

Stopped = Callable[[], Awaitable[PromptcastError | None]]


class Sink(Protocol):
    """Where a relay's frames go; raising `OSError` means the reader is gone."""

    async def event(self, seq: int, frame: bytes) -> None: ...

    async def terminal(self, seq: int, frame: bytes) -> None: ...

    async def heartbeat(self) -> None: ...

class Channel(Protocol):
    """A client connection that takes writes at once (the server's; `server/direct.py`)."""

    paused: bool  # the client reads slower than we write: stop until `on_writable`
    gone: bool

    def write(self, frame: bytes) -> bool:
        """Write `frame` as one piece; False if the client is gone."""

    def on_gone(self, callback: Callable[[], object] | None) -> None: ...

    def on_writable(self, callback: Callable[[], object] | None) -> None: ...


class AppendSink(Sink, Protocol):
    """A `Sink` into a streams store that can also take frames without waiting (push mode)."""

    def append_nowait(self, seq: int, frame: bytes) -> asyncio.Future[None] | None:
        """Store `frame`: None if done already, else a future of it; raises past a cap."""


HEARTBEAT = sse.comment("keep-alive")
_TERMINAL_TYPES = ("error", "timeout")
# A terminal frame is small; a client that cannot take it in this long is gone.
_TERMINAL_WRITE_TIMEOUT = 5.0
# Frames on their way to the store at once before a producer stops reading its
# upstream (and reads again once half of them are stored).
_MAX_UNSTORED = 32


class _ClientGone(Exception):
    """Writing to the sink failed: the reader is gone."""


class Outcome(enum.StrEnum):
    DONE = "done"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Limits:
    first_token_timeout: float
    idle_timeout: float
    total_timeout: float
    heartbeat_interval: float | None


@dataclass(slots=True)
class StreamStats:
    """What one structured log line says about a finished stream."""

    stream_id: str
    started: float = field(default_factory=time.monotonic)
    first_event_after: float | None = None
    duration: float = 0.0
    chunks: int = 0
    outcome: Outcome = Outcome.CANCELLED
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def error_frame(exc: PromptcastError, event_id: str | None = None, *,
                openai_style: bool = False) -> bytes:
    """The terminal `event: error` / `event: timeout` frame for `exc`.

    `openai_style` wraps the payload as `{"error": {...}}`, the shape the
    OpenAI SDKs raise on; our own clients read `{"code", "message"}`.
    """
    payload: dict[str, object] = dict(error_payload(exc))
    if openai_style:
        payload = {"error": {"message": exc.message, "type": exc.sse_event,
                             "code": exc.error_code}}
    return sse.encode(orjson.dumps(payload).decode(), event=exc.sse_event, id=event_id)


# A plain one-line message event with our id: prefix (`id: <stream>.`), number, data.
_DATA_FRAME = b"%s%d\ndata: %s\n\n"


class Relay:
    """Relays one event stream into one sink; `run()` returns when the stream has ended."""

    # Slots: with a thousand streams open, each chunk's objects are cold in the
    # cache; attributes inline in the object are fewer lines to fetch than a dict.
    __slots__ = (
        "_channel", "_client_gone", "_done", "_events", "_finished", "_id_prefix",
        "_last_event", "_last_write", "_limits", "_loop", "_openai_errors", "_paused",
        "_pending", "_pusher", "_reason", "_refused", "_seq", "_settled", "_start", "_store",
        "_store_paused", "_stream_id", "_tap", "_terminal", "_timer", "_unstored", "last_frame",
        "stats",
    )

    def __init__(self, events: EventStream, limits: Limits, stream_id: str, *,
                 openai_errors: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None,
                 tap: Callable[[bytes], object] | None = None) -> None:
        self._events = events
        # Called with the frames written for the reader (the run recorder's), or None.
        self._tap = tap
        self._openai_errors = openai_errors
        self._limits = limits
        self.stats = StreamStats(stream_id)
        self._id_prefix = f"id: {stream_id}.".encode()
        self._stream_id = stream_id
        self._seq = 0
        self._reason: PromptcastError | None = None
        self._client_gone = False
        self._finished = False
        # The caller's loop if it has it at hand: on Python 3.11 each lookup of
        # the running loop is a getpid() system call, and this is once a stream.
        self._loop = loop or asyncio.get_running_loop()
        now = self._loop.time()
        self._start = now
        self._last_event: float | None = None
        self._last_write = now
        # Push mode (run_direct) only.
        self._channel: Channel | None = None
        self._pusher: PushEvents | None = None
        self._done: asyncio.Future[None] | None = None
        self._terminal: bytes | None = None
        self._settled = False
        self._paused = False
        # Framed events not yet written: for a client, a read's worth (any item may
        # hold several); for a store, one event an item.
        self._pending: list[bytes] = []
        self.last_frame = b""
        self._timer: asyncio.TimerHandle | None = None
        # Push mode into a store (run_stored) only.
        self._store: AppendSink | None = None
        self._unstored: set[asyncio.Future[None]] = set()
        self._store_paused = False
        self._refused = False  # the store failed a frame: the stream has a gap from there

    def _frame(self, event: sse.Event) -> bytes:
        self._seq += 1
        data = event.data
        if event.event == "message" and "\n" not in data and "\r" not in data:
            # The hot path: one JSON line, framed with one bytes format.
            return _DATA_FRAME % (self._id_prefix, self._seq, data.encode())
        kind = None if event.event == "message" else event.event
        return sse.encode(data, event=kind, id=f"{self._stream_id}.{self._seq}")

    async def run(self, sink: Sink, stopped: Stopped) -> StreamStats:
        """Pump events into `sink` until a terminal frame, a limit, or `stopped()` returns."""
        main = asyncio.current_task()
        assert main is not None
        ticker = self._loop.create_task(self._tick(sink, main))
        watch = self._loop.create_task(self._watch(stopped, main))
        terminal: bytes | None = None
        try:
            terminal = await self._pump(sink)
        except asyncio.CancelledError:
            if self._reason is None and not self._client_gone:
                raise  # the server itself is shutting this task down
            main.uncancel()
        except PromptcastError as exc:
            self._reason = exc
        except _ClientGone:
            self._client_gone = True
        except OSError as exc:
            # Raised by the upstream side, not the client's: the client is
            # still there and must be told.
            self._reason = UpstreamError(f"the upstream connection failed: {type(exc).__name__}",
                                         code="upstream_closed")
        except Exception as exc:
            log.exception("stream %s failed", self._stream_id)
            self._reason = UpstreamError(f"internal error: {type(exc).__name__}",
                                         code="internal_error")
        finally:
            self._finished = True
            ticker.cancel()
            watch.cancel()
            with contextlib.suppress(Exception):
                await self._events.aclose()
        stats = self.stats
        terminal = self._conclude(terminal)
        if terminal is not None:
            try:
                async with asyncio.timeout(_TERMINAL_WRITE_TIMEOUT):
                    await sink.terminal(self._seq, terminal)
            except (OSError, TimeoutError, PromptcastError):
                stats.outcome = Outcome.CANCELLED
        stats.duration = time.monotonic() - stats.started
        return stats

    def _conclude(self, terminal: bytes | None) -> bytes | None:
        """Settle the outcome; the terminal frame to write, if the client is still there."""
        stats = self.stats
        if self._client_gone:
            stats.outcome = Outcome.CANCELLED
            return None
        if self._reason is not None:
            stats.outcome = (Outcome.TIMEOUT if isinstance(self._reason, StreamTimeout)
                             else Outcome.ERROR)
            stats.error_code = self._reason.error_code
            self._seq += 1
            terminal = error_frame(self._reason, f"{self._stream_id}.{self._seq}",
                                   openai_style=self._openai_errors)
        if self._tap is not None and terminal is not None:
            self._tap(terminal)
        return terminal

    def _terminal_of(self, event: sse.Event) -> bytes | None:
        """The frame of `event` if it ends the stream (`[DONE]`, error, timeout), else None."""
        kind = event.event
        if kind in _TERMINAL_TYPES:
            stats = self.stats
            stats.outcome = Outcome.TIMEOUT if kind == "timeout" else Outcome.ERROR
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                stats.error_code = orjson.loads(event.data).get("code")
            return self._frame(event)
        if kind == "message" and event.data == "[DONE]":
            self.stats.outcome = Outcome.DONE
            return self._frame(event)
        return None

    async def _pump(self, sink: Sink) -> bytes | None:
        """Write events until the terminal one, which is returned unwritten."""
        stats = self.stats
        async for event in self._events:
            now = self._loop.time()
            if self._last_event is None:
                stats.first_event_after = now - self._start
            self._last_event = now
            terminal = self._terminal_of(event)
            if terminal is not None:
                return terminal
            frame = self._frame(event)
            try:
                await sink.event(self._seq, frame)
            except OSError as exc:
                raise _ClientGone from exc
            if self._tap is not None:
                self._tap(frame)
            self._last_write = self._loop.time()
            stats.chunks += 1
            if '"usage":{' in event.data:
                self._count_usage(event.data)
        raise UpstreamError("the upstream ended the stream before it was complete",
                            code="upstream_closed")

    def _count_usage(self, data: str) -> None:
        # Only the (usually last) chunk carrying `usage` is parsed, for metrics.
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError, ValueError,
                                 KeyError):
            usage = orjson.loads(data)["usage"]
            self.stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens = int(usage.get("completion_tokens") or 0)

    def _stop(self, main: asyncio.Task[object], reason: PromptcastError | None) -> None:
        if self._finished:
            return
        if reason is None:
            self._client_gone = True
        else:
            self._reason = reason
        main.cancel()

    def _read_deadline(self) -> float:
        """When the stream times out if nothing comes (`_timeout_reason()` says why)."""
        limits = self._limits
        last = self._last_event
        deadline = (self._start + limits.first_token_timeout if last is None
                    else last + limits.idle_timeout)
        return min(deadline, self._start + limits.total_timeout)

    def _timeout_reason(self) -> str:
        """Why the stream timed out at `_read_deadline()`: made only then, not per check."""
        limits = self._limits
        if self._read_deadline() == self._start + limits.total_timeout:
            return f"the stream reached its {limits.total_timeout:g} s limit"
        if self._last_event is None:
            return f"no first token within {limits.first_token_timeout:g} s"
        return f"no data from the model for {limits.idle_timeout:g} s"

    def _next_check(self, now: float, deadline: float) -> float:
        """How long the ticker may sleep: to `deadline`, or less if a first event could bring it on.

        Events only move the read deadline later, except the first one: it
        replaces the first-token limit with the idle one, which may end sooner.
        """
        if self._last_event is None:
            deadline = min(deadline, now + self._limits.idle_timeout)
        return deadline - now

    async def _tick(self, sink: Sink, main: asyncio.Task[object]) -> None:
        limits = self._limits
        while True:
            now = self._loop.time()
            read_deadline = self._read_deadline()
            if now >= read_deadline:
                self._stop(main, StreamTimeout(self._timeout_reason()))
                return
            if limits.heartbeat_interval is None:
                await asyncio.sleep(self._next_check(now, read_deadline))
                continue
            heartbeat_at = self._last_write + limits.heartbeat_interval
            if now >= heartbeat_at:
                self._last_write = now
                try:
                    # A client that stopped reading blocks this write; it must
                    # not also stop the deadlines from being enforced.
                    async with asyncio.timeout(read_deadline - now):
                        await sink.heartbeat()
                except TimeoutError:  # an OSError too: it must come first
                    self._stop(main, StreamTimeout("the client stopped reading the stream"))
                    return
                except OSError:
                    self._stop(main, None)
                    return
                continue
            await asyncio.sleep(self._next_check(now, min(read_deadline, heartbeat_at)))

    async def _watch(self, stopped: Stopped, main: asyncio.Task[object]) -> None:
        self._stop(main, await stopped())

    # -- push mode ---------------------------------------------------------------

    def can_run_direct(self) -> bool:
        """Whether the upstream can push its events (`run_direct`); else use `run`."""
        # Duck-typed: a runtime-checkable Protocol's isinstance costs ~3 µs a stream.
        can_push = getattr(self._events, "can_push", None)
        return can_push is not None and bool(can_push())

    async def run_direct(self, channel: Channel, drain: Drain) -> StreamStats:
        """`run()` for a connection that takes writes directly; returns when the stream ended.

        The terminal frame is not written but left in `last_frame`, for the
        caller to send with the end of the body; so are the events that came
        in the same upstream read as the stream's end.
        """
        events = cast(PushEvents, self._events)
        self._pusher = events
        self._channel = channel
        channel.on_gone(self._gone)
        if channel.gone:  # it left before we listened
            self._gone()
        unsubscribe = drain.subscribe(self._drained)
        try:
            await self._pushed(events)
        finally:
            channel.on_gone(None)
            channel.on_writable(None)
            unsubscribe()
        # What the read that ended the stream carried before its end (flush()
        # held it back), ahead of the terminal frame.
        last = b"".join(self._pending)
        self._pending.clear()
        terminal = self._conclude(self._terminal)
        if terminal is not None:
            last += terminal
            if channel.paused:
                # The response's own end waits for the client to drain (and
                # gives up after a while); the frames must not wait with it.
                if not channel.write(last):
                    self.stats.outcome = Outcome.CANCELLED
            elif channel.gone:
                self.stats.outcome = Outcome.CANCELLED
            else:
                # Left for the response to send with the end of the body: one
                # write for all of them instead of two.
                self.last_frame = last
        stats = self.stats
        stats.duration = time.monotonic() - stats.started
        # Drop the references that make loops (timer, upstream, channel all
        # point back here), so the stream is freed without the cyclic GC.
        self._timer = self._pusher = self._channel = self._done = None
        return stats

    async def run_stored(self, sink: AppendSink, stopped: Stopped) -> StreamStats:
        """`run()` for a producer whose upstream pushes: each read's frames go to the store
        from the read's callback, with no task woken per chunk. Returns when the stream ended.
        """
        events = cast(PushEvents, self._events)
        self._pusher = events
        self._store = sink
        loop = self._loop
        watch = loop.create_task(self._watch_stored(stopped))
        try:
            await self._pushed(events)
        finally:
            watch.cancel()
        await self._store_rest(sink)
        stats = self.stats
        stats.duration = time.monotonic() - stats.started
        self._timer = self._pusher = self._done = self._store = None
        return stats

    async def _store_rest(self, sink: AppendSink) -> None:
        """After the end: frames still on their way, those the last read held back, the terminal."""
        if self._unstored:
            # The terminal frame must be the last one stored.
            await asyncio.wait(set(self._unstored))
        pending, self._pending = self._pending, []
        # Numbered up to the upstream's terminal frame, if it sent one.
        seq = self._seq - len(pending) - (self._terminal is not None)
        try:
            for frame in pending if not self._refused else ():
                # After a refusal nothing more is stored: no frames past a gap.
                seq += 1
                await sink.event(seq, frame)
        except PromptcastError as exc:
            self._store_failed(exc)
        except Exception as exc:
            log.exception("stream %s failed", self._stream_id, exc_info=exc)
            self._store_failed(UpstreamError(f"internal error: {type(exc).__name__}",
                                             code="internal_error"))
        terminal = self._conclude(self._terminal)
        if terminal is not None:
            try:
                async with asyncio.timeout(_TERMINAL_WRITE_TIMEOUT):
                    await sink.terminal(self._seq, terminal)
            except (OSError, TimeoutError, PromptcastError):
                self.stats.outcome = Outcome.CANCELLED

    def _to_store(self, pending: list[bytes]) -> None:
        store = self._store
        assert store is not None
        seq = self._seq - len(pending)
        self._pending = []  # the store keeps these frames; no copy
        try:
            for frame in pending:
                seq += 1
                stored = store.append_nowait(seq, frame)
                if stored is not None:
                    self._unstored.add(stored)
                    stored.add_done_callback(self._stored)
        except PromptcastError as exc:  # past a cap, or the store failed this stream
            self._store_failed(exc)
            return
        except Exception as exc:
            self._failed(exc)
            return
        # Plain events are timed once per read, here (see data()).
        self._last_event = self._last_write = self._loop.time()
        if len(self._unstored) >= _MAX_UNSTORED and not self._store_paused and not self._settled:
            # The store is slower than the upstream: stop reading it for a while.
            self._store_paused = True
            assert self._pusher is not None
            self._pusher.pause()

    def _stored(self, stored: asyncio.Future[None]) -> None:
        self._unstored.discard(stored)
        if stored.cancelled():
            self._store_failed(StoreUnavailable("the streams store closed"))
            return
        exc = stored.exception()
        if exc is not None:
            self._store_failed(exc if isinstance(exc, PromptcastError) else UpstreamError(
                f"internal error: {type(exc).__name__}", code="internal_error"))
            return
        if self._store_paused and len(self._unstored) <= _MAX_UNSTORED // 2 and not self._settled:
            self._store_paused = False
            assert self._pusher is not None
            self._pusher.resume()

    def _store_failed(self, exc: PromptcastError) -> None:
        # Even after the end: the terminal frame waits for the frames on their
        # way, and must then say the stream is incomplete rather than done.
        if self._reason is None or not self._refused:
            self._reason = exc
        self._refused = True
        self._settle()

    async def _watch_stored(self, stopped: Stopped) -> None:
        reason = await stopped()
        if not self._settled:
            if reason is None:
                self._client_gone = True
            else:
                self._reason = reason
            self._settle()

    async def _pushed(self, events: PushEvents) -> None:
        """Listen to `events`, deadlines running, until the stream settles; then close them."""
        done = self._done = self._loop.create_future()
        self._schedule_timer(self._loop.time())
        try:
            if not self._settled:
                try:
                    events.push(self)  # may hand over buffered events, even the whole stream
                except Exception as exc:
                    self._failed(exc)
            if not self._settled:
                await done
        finally:
            self._finished = self._settled = True
            if self._timer is not None:
                self._timer.cancel()
            if self._tap is not None and self._pending:
                self._tap(b"".join(self._pending))  # the last read's, held back by flush()
            events.close()

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            done = self._done
            if done is not None and not done.done():
                done.set_result(None)

    def event(self, event: sse.Event) -> None:
        """An upstream event, inside its read callback: framed now, written at `flush()`."""
        if self._settled:
            return
        try:
            now = self._loop.time()
            first = self._last_event is None
            self._last_event = now
            if first:
                self.stats.first_event_after = now - self._start
                # The idle limit may end sooner than the first-token one did.
                self._schedule_timer(now, sooner_only=True)
            terminal = self._terminal_of(event)
            if terminal is not None:
                self._terminal = terminal
                self._settle()
                return
            self._pending.append(self._frame(event))
            self.stats.chunks += 1
            data = event.data
            if '"usage":{' in data:
                self._count_usage(data)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A bug of ours inside a read callback: end the stream with `internal_error`."""
        log.exception("stream %s failed", self._stream_id, exc_info=exc)
        self._reason = UpstreamError(f"internal error: {type(exc).__name__}",
                                     code="internal_error")
        self._settle()

    def data(self, payload: bytes) -> None:
        """`event()` for a plain one-line message event, as its bytes: no str round trip."""
        if self._settled:
            return
        if self._last_event is None:
            self.event(sse.Event(payload.decode()))  # the first starts the clocks: the general path
            return
        if payload == b"[DONE]":
            # What `event()` makes of it, without an Event to make it from.
            self._last_event = self._loop.time()
            self.stats.outcome = Outcome.DONE
            self._seq += 1
            self._terminal = _DATA_FRAME % (self._id_prefix, self._seq, payload)
            self._settle()
            return
        try:
            # Timed once per read, in flush(), not per event.
            self._seq += 1
            self._pending.append(_DATA_FRAME % (self._id_prefix, self._seq, payload))
            self.stats.chunks += 1
            # Not `in`: on Python 3.11 a bytes `in` first tries the needle as an
            # integer, and makes and drops a TypeError (130 ns of 170 here).
            if scan.contains(payload, b'"usage":{'):
                self._count_usage(payload.decode())
        except Exception as exc:
            self._failed(exc)

    def plain(self, run: sse.Run) -> None:
        """`data()` for each event of `run`, framed all at once: no Python step per event."""
        if self._settled:
            return
        lines = run.lines
        if self._last_event is None:
            # The first event starts the clocks: the general path, for it alone.
            self.data(lines[0][6:])
            lines = lines[1:]
            if self._settled or not lines:
                return
        end = scan.find_line(lines, b"data: [DONE]")  # no Python step per line
        done = end >= 0
        if done:
            lines = lines[:end]
        try:
            if lines:
                seq = self._seq
                count = len(lines)
                self._seq = seq + count
                self.stats.chunks += count
                # Each event keeps its bytes; our `id:` line goes in front of it.
                if self._store is None:
                    # One C pass for the lot (scan.py).
                    self._pending.append(scan.frame(self._id_prefix, seq + 1, lines))
                else:
                    # A store keeps an entry per event (`_to_store`): a frame each.
                    prefix = self._id_prefix
                    ids = range(seq + 1, seq + count + 1)
                    self._pending += [b"%s%d\n%s\n\n" % (prefix, n, line)
                                      for n, line in zip(ids, lines, strict=True)]
                if scan.contains(run.raw, b'"usage":{'):
                    for line in lines:
                        if b'"usage":{' in line:
                            self._count_usage(line[6:].decode())
        except Exception as exc:
            self._failed(exc)
            return
        if done:
            self.data(b"[DONE]")

    def flush(self) -> None:
        """The end of one upstream read: write the events it carried, in one write.

        Events that arrived together leave together, none held back past the
        read that brought them; each stays whole, so a heartbeat (written only
        between reads) can never land inside one. A read that also ended the
        stream leaves its events to `run_direct`, which writes them with the
        terminal frame and the end of the body moments later, in one write.
        """
        pending = self._pending
        if not pending or self._client_gone or self._settled:
            return
        if self._tap is not None:
            self._tap(b"".join(pending))
        if self._store is not None:
            self._to_store(pending)
            return
        channel = self._channel
        assert channel is not None
        frames = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not channel.write(frames):
            self._client_gone = True
            self._settle()
            return
        self._last_event = self._last_write = self._loop.time()
        if channel.paused and not self._paused and not self._settled:
            # The client reads slower than the upstream writes: stop reading
            # the upstream until the client's buffer drains.
            self._paused = True
            assert self._pusher is not None
            self._pusher.pause()
            channel.on_writable(self._writable)

    def end(self, error: PromptcastError | None) -> None:
        """The upstream ended without a terminal event, or failed."""
        if self._settled:
            return
        self._reason = error or UpstreamError(
            "the upstream ended the stream before it was complete", code="upstream_closed")
        self._settle()

    def _writable(self) -> None:
        channel = self._channel
        if self._paused and channel is not None and not channel.paused:
            self._paused = False
            channel.on_writable(None)
            assert self._pusher is not None
            self._pusher.resume()

    def _gone(self) -> None:
        if not self._settled:
            self._client_gone = True
            self._settle()

    def _drained(self) -> None:
        if not self._settled:
            self._reason = Drain.error()
            self._settle()

    def _schedule_timer(self, now: float, *, sooner_only: bool = False) -> None:
        """Arm the timer for the next deadline or heartbeat; with `sooner_only`, leave it be
        unless that comes sooner than the armed time (which re-arms itself when it fires)."""
        deadline = self._read_deadline()
        interval = self._limits.heartbeat_interval
        if interval is not None and self._channel is not None:
            deadline = min(deadline, max(self._last_write + interval, now))
        timer = self._timer
        if timer is not None:
            if sooner_only and deadline >= timer.when():
                return
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        """Deadlines and heartbeats; events only move timestamps, so this re-arms itself."""
        if self._settled:
            return
        now = self._loop.time()
        deadline = self._read_deadline()
        if now >= deadline:
            self._reason = StreamTimeout(
                "the client stopped reading the stream" if self._paused
                else "the streams store stopped taking the stream" if self._store_paused
                else self._timeout_reason())
            self._settle()
            return
        interval = self._limits.heartbeat_interval
        channel = self._channel
        # Heartbeats belong to a connection; a producer into a store has none.
        if interval is not None and channel is not None and now >= self._last_write + interval:
            # A paused client has unread bytes queued already; a heartbeat adds nothing.
            if not self._paused and not channel.write(HEARTBEAT):
                self._client_gone = True
                self._settle()
                return
            self._last_write = now
        self._schedule_timer(now)
