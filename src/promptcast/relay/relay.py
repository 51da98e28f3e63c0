"""One stream's life: relay events into a sink, keep the connection alive, enforce limits, end once.

    upstream ── pushes from its read callbacks (or a task's, `wire/pump.py`):
        │        event / data / plain ... flush    (`sse.EventListener`)
        ▼
    Relay ── frames each event with our id; one write per upstream read ──▶ sink.write
        one timer: a heartbeat after silence; the first-token, idle and total limits
        stops: the sink's reader left or failed, the drain expired, `stop()` (a DELETE)
        ▼ settled
    the request's task: closes the upstream, then `sink.close()`: the frames the
    last read held back, and the one terminal frame — the upstream's own
    (`[DONE]`, error, timeout), or ours for a limit or a failure; none when the
    reader is gone.

The sink is a client's connection or a streams store (`relay/sink.py`).
Docs: docs/architecture.md, "One stream, start to end".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from promptcast.errors import PromptcastError, StreamTimeout, UpstreamError, error_payload
from promptcast.relay.drain import Drain
from promptcast.relay.sink import Sink
from promptcast.relay.stats import Limits, Outcome, StreamStats
from promptcast.wire import scan, sse

log = logging.getLogger("promptcast.relay")

__all__ = ["Limits", "Outcome", "Relay", "StreamStats", "Upstream", "error_frame"]


class Upstream(Protocol):
    """Where a relay's events come from: a stream that pushes them to a listener."""

    def push(self, listener: sse.EventListener) -> None:
        """Hand every event to `listener` from now on (those in hand at once, maybe all)."""

    def pause(self) -> None:
        """Stop reading until `resume()`: the sink is behind."""

    def resume(self) -> None: ...

    async def aclose(self) -> None:
        """Stop: no more events; the upstream work is cancelled, its connection released."""


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


class Relay:
    """Relays one upstream into one sink; `run()` returns when the stream has ended."""

    # Slots: with a thousand streams open, each chunk's objects are cold in the
    # cache; attributes inline in the object are fewer lines to fetch than a dict.
    __slots__ = (
        "_done", "_events", "_gone", "_id_prefix", "_last_event", "_last_write", "_limits",
        "_loop", "_openai_errors", "_paused", "_pending", "_reason", "_seq", "_settled",
        "_sink", "_sink_failed", "_start", "_stream_id", "_tap", "_terminal", "_timer", "stats",
    )

    def __init__(self, events: Upstream, limits: Limits, stream_id: str, *,
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
        self._gone = False  # the reader left: no terminal frame
        self._sink_failed = False
        # The caller's loop if it has it at hand: on Python 3.11 each lookup of
        # the running loop is a getpid() system call, and this is once a stream.
        self._loop = loop or asyncio.get_running_loop()
        now = self._loop.time()
        self._start = now
        self._last_event: float | None = None
        self._last_write = now
        self._sink: Sink | None = None
        self._done: asyncio.Future[None] | None = None
        self._terminal: bytes | None = None
        self._settled = False
        self._paused = False
        # Framed events not yet written: a read's worth (for a client an item
        # may hold several; for a `per_event` sink, one event an item).
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- the stream's life, in the request's task --------------------------------

    async def run(self, sink: Sink, drain: Drain | None = None) -> StreamStats:
        """Relay into `sink` until the stream settles; then close the upstream and end the sink."""
        self._sink = sink
        sink.on_stop(self._stopped)
        try:
            await self._relay(sink, drain)
            pending, self._pending = self._pending, []
            if self._tap is not None and pending:
                self._tap(b"".join(pending))  # the last read's, held back for the end
            # Numbered up to the upstream's terminal frame, if it sent one.
            first = self._seq - len(pending) - (self._terminal is not None) + 1
            delivered = await sink.close(pending, first, self._conclude)
        finally:
            sink.on_stop(None)
            sink.on_writable(None)
        stats = self.stats
        if not delivered:
            stats.outcome = Outcome.CANCELLED
        stats.duration = time.monotonic() - stats.started
        # Drop the references that make loops (timer, upstream, sink all point
        # back here), so the stream is freed without the cyclic collector.
        self._timer = self._sink = self._done = None
        return stats

    async def _relay(self, sink: Sink, drain: Drain | None) -> None:
        """Listen to the upstream, limits running, until the stream settles; then close it."""
        unsubscribe = drain.subscribe(self._drained) if drain is not None else None
        events = self._events
        done = self._done = self._loop.create_future()
        self._schedule_timer(self._loop.time())
        try:
            if sink.gone:  # it left before we listened
                self._stopped(None)
            if not self._settled:
                try:
                    events.push(self)  # may hand over buffered events, even the whole stream
                except Exception as exc:
                    self._failed(exc)
            if not self._settled:
                await done
        finally:
            self._settled = True
            if self._timer is not None:
                self._timer.cancel()
            if unsubscribe is not None:
                unsubscribe()
            with contextlib.suppress(Exception):
                await events.aclose()

    def stop(self, reason: PromptcastError) -> None:
        """End the stream now with `reason`'s frame (a DELETE, a producer given up)."""
        if not self._settled:
            self._reason = reason
            self._settle()

    def _conclude(self) -> tuple[bytes, int] | None:
        """Settle the outcome: the terminal frame and its number, None if the reader is gone."""
        stats = self.stats
        if self._gone:
            stats.outcome = Outcome.CANCELLED
            return None
        reason = self._reason
        if reason is not None:
            stats.outcome = (Outcome.TIMEOUT if isinstance(reason, StreamTimeout)
                             else Outcome.ERROR)
            stats.error_code = reason.error_code
            self._seq += 1
            terminal = error_frame(reason, f"{self._stream_id}.{self._seq}",
                                   openai_style=self._openai_errors)
        elif self._terminal is None:  # pragma: no cover - settled without a reason or an end
            return None
        else:
            terminal = self._terminal
        if self._tap is not None:
            self._tap(terminal)
        return terminal, self._seq

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            done = self._done
            if done is not None and not done.done():
                done.set_result(None)

    def _stopped(self, error: PromptcastError | None) -> None:
        """The sink's news: its reader left (None), or it failed (the error to end with)."""
        if error is None:
            if not self._settled:
                self._gone = True
                self._settle()
            return
        # Even after the end: the terminal frame waits for the frames on their
        # way, and must then say the stream is incomplete rather than done.
        if not self._sink_failed:
            self._sink_failed = True
            self._reason = error
        self._settle()

    def _drained(self) -> None:
        if not self._settled:
            self._reason = Drain.error()
            self._settle()

    def _failed(self, exc: Exception) -> None:
        """A bug of ours inside a read callback: end the stream with `internal_error`."""
        log.exception("stream %s failed", self._stream_id, exc_info=exc)
        self._reason = UpstreamError(f"internal error: {type(exc).__name__}",
                                     code="internal_error")
        self._settle()

    # -- events, inside the upstream's read callbacks (sse.EventListener) -------

    def event(self, event: sse.Event) -> None:
        """Any upstream event: framed now, written at `flush()`."""
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

    def data(self, payload: bytes) -> None:
        """A plain one-line message event, as its bytes: no str round trip."""
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
            self._terminal = sse.data_frame(self._id_prefix, self._seq, payload)
            self._settle()
            return
        try:
            # Timed once per read, in flush(), not per event.
            self._seq += 1
            self._pending.append(sse.data_frame(self._id_prefix, self._seq, payload))
            self.stats.chunks += 1
            # Not `in`: on Python 3.11 a bytes `in` first tries the needle as an
            # integer, and makes and drops a TypeError.
            if scan.contains(payload, b'"usage":{'):
                self._count_usage(payload.decode())
        except Exception as exc:
            self._failed(exc)

    def plain(self, run: sse.Run) -> None:
        """Each event of a run of plain ones, framed all at once: no Python step per event."""
        if self._settled:
            return
        lines = run.lines
        if self._last_event is None:
            # The first event starts the clocks: the general path, for it alone.
            self.data(sse.payload(lines[0]))
            lines = lines[1:]
            if self._settled or not lines:
                return
        end = scan.find_line(lines, sse.DONE_LINE)  # no Python step per line
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
                assert self._sink is not None
                self._pending += sse.frames_of(self._id_prefix, seq + 1, lines,
                                               apart=self._sink.per_event)
                if scan.contains(run.raw, b'"usage":{'):
                    for line in lines:
                        if scan.contains(line, b'"usage":{'):
                            self._count_usage(sse.payload(line).decode())
        except Exception as exc:
            self._failed(exc)
            return
        if done:
            self.data(b"[DONE]")

    def flush(self) -> None:
        """The end of one upstream read: the events it carried go to the sink, in one write.

        Events that arrived together leave together, none held back past the
        read that brought them; each stays whole, so a heartbeat (written only
        between reads) can never land inside one. A read that also ended the
        stream leaves its events to `run()`, which ends the sink with them.
        """
        pending = self._pending
        if not pending or self._settled:
            return
        sink = self._sink
        assert sink is not None
        if self._tap is not None:
            self._tap(b"".join(pending))
        if not sink.write(pending, self._seq - len(pending) + 1):
            pending.clear()
            self._gone = True
            self._settle()
            return
        pending.clear()
        self._last_event = self._last_write = self._loop.time()
        if sink.paused and not self._paused and not self._settled:
            # The reader is slower than the upstream: stop reading the upstream
            # until the sink catches up.
            self._paused = True
            self._events.pause()
            sink.on_writable(self._writable)

    def end(self, error: PromptcastError | None) -> None:
        """The upstream ended without a terminal event, or failed."""
        if self._settled:
            return
        self._reason = error or UpstreamError(
            "the upstream ended the stream before it was complete", code="upstream_closed")
        self._settle()

    def _frame(self, event: sse.Event) -> bytes:
        self._seq += 1
        data = event.data
        if event.event == "message" and "\n" not in data and "\r" not in data:
            # The hot path: one JSON line, framed with one bytes format.
            return sse.data_frame(self._id_prefix, self._seq, data.encode())
        kind = None if event.event == "message" else event.event
        return sse.encode(data, event=kind, id=f"{self._stream_id}.{self._seq}")

    def _terminal_of(self, event: sse.Event) -> bytes | None:
        """The frame of `event` if it ends the stream (`[DONE]`, error, timeout), else None."""
        kind = event.event
        if kind in sse.TERMINAL_TYPES:
            stats = self.stats
            stats.outcome = Outcome.TIMEOUT if kind == "timeout" else Outcome.ERROR
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                stats.error_code = orjson.loads(event.data).get("code")
            return self._frame(event)
        if kind == "message" and event.data == sse.DONE_DATA:
            self.stats.outcome = Outcome.DONE
            return self._frame(event)
        return None

    def _count_usage(self, data: str) -> None:
        # Only the (usually last) chunk carrying `usage` is parsed, for metrics.
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError, ValueError,
                                 KeyError):
            usage = orjson.loads(data)["usage"]
            self.stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens = int(usage.get("completion_tokens") or 0)

    def _writable(self) -> None:
        sink = self._sink
        if self._paused and sink is not None and not sink.paused:
            self._paused = False
            sink.on_writable(None)
            self._events.resume()

    # -- the one timer: heartbeats and limits --------------------------------------

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
        if self._sink is not None and self._sink.paused:
            return self._sink.stall
        if self._read_deadline() == self._start + limits.total_timeout:
            return f"the stream reached its {limits.total_timeout:g} s limit"
        if self._last_event is None:
            return f"no first token within {limits.first_token_timeout:g} s"
        return f"no data from the model for {limits.idle_timeout:g} s"

    def _schedule_timer(self, now: float, *, sooner_only: bool = False) -> None:
        """Arm the timer for the next deadline or heartbeat; with `sooner_only`, leave it be
        unless that comes sooner than the armed time (which re-arms itself when it fires)."""
        deadline = self._read_deadline()
        interval = self._limits.heartbeat_interval
        if interval is not None:
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
        if now >= self._read_deadline():
            self._reason = StreamTimeout(self._timeout_reason())
            self._settle()
            return
        interval = self._limits.heartbeat_interval
        if interval is not None and now >= self._last_write + interval:
            sink = self._sink
            assert sink is not None
            # A paused reader has unread bytes queued already; a heartbeat adds nothing.
            if not sink.paused and not sink.heartbeat():
                self._gone = True
                self._settle()
                return
            self._last_write = now
        self._schedule_timer(now)
