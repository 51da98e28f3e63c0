"""The relay, driven directly: a scripted upstream, a sink that records bytes, a controlled stop.

Every test checks the two promises the relay makes whatever happens: the
upstream is closed exactly once, and at most one terminal frame is written,
as the last thing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import pytest

from promptcast.errors import (
    PromptcastError,
    SSEProtocolError,
    StoreUnavailable,
    StreamStopped,
    StreamTimeout,
    StreamTooLarge,
    UpstreamError,
)
from promptcast.relay import resumable
from promptcast.relay.drain import Drain
from promptcast.relay.relay import Limits, Outcome, Relay, StreamStats
from promptcast.relay.resumable import StoreSink
from promptcast.wire.pump import Pump
from promptcast.wire.sse import HEARTBEAT, Decoder, Event, Run

# The relay frames runs with scan.py: on its C and its Python scans both.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("both_scans")]

TINY = Limits(first_token_timeout=0.2, idle_timeout=0.2, total_timeout=1,
              heartbeat_interval=0.05)
# For tests about something else: no timeout can fire before the hang guard.
PATIENT = Limits(first_token_timeout=30, idle_timeout=30, total_timeout=60,
                 heartbeat_interval=0.05)

CHUNK_1 = '{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"首先"}}]}'  # noqa: E501
CHUNK_2 = '{"id":"chatcmpl-1", "choices": [ {"delta": {"content": "，明确\\u89d2色"}} ] }'
DONE = Event("[DONE]")
FOREVER = "forever"  # a step: the upstream goes silent and never speaks again


@dataclass
class Upstream:
    """A scripted event stream that can only be iterated (pushed by `wire.pump.Pump`).

    Steps: an `Event` is yielded; an `asyncio.Event` is waited for; an
    exception is raised; FOREVER waits for ever; a float starts a trickle of
    one chunk per that many seconds, for ever.
    """

    steps: list[Any]
    closed: int = 0
    cancelled: bool = False
    yielded: int = 0
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            for step in self.steps:
                if isinstance(step, Event):
                    self.yielded += 1
                    yield step
                elif isinstance(step, asyncio.Event):
                    self.waiting.set()
                    await step.wait()
                    self.waiting.clear()
                elif isinstance(step, BaseException):
                    raise step
                elif step == FOREVER:
                    self.waiting.set()
                    await asyncio.Event().wait()
                elif isinstance(step, float):
                    while True:
                        await asyncio.sleep(step)  # a slow model, not a wait in the test
                        self.yielded += 1
                        yield Event(CHUNK_1)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def aclose(self) -> None:
        self.closed += 1


@dataclass
class Sink:
    """A client's connection as `relay/sink.py` has it: records the bytes, in order.

    `fail_on` names the writes ("event", "terminal", "heartbeat") that find the
    client gone; after one in `stall_on` the client stops reading (the sink
    stays paused). `on_heartbeat` / `on_event` map a count to an asyncio.Event to set.
    """

    wire: list[bytes] = field(default_factory=list)
    seqs: list[tuple[str, int]] = field(default_factory=list)
    fail_on: tuple[str, ...] = ()
    stall_on: tuple[str, ...] = ()
    attempts: list[str] = field(default_factory=list)
    on_heartbeat: dict[int, asyncio.Event] = field(default_factory=dict)
    on_event: dict[int, asyncio.Event] = field(default_factory=dict)
    paused: bool = False
    gone: bool = False
    last: bytes = b""  # what the end of the body carried: held-back frames, then the terminal
    before_end: list[bytes] = field(default_factory=list)  # what was written before it
    per_event = False
    stall = "the client stopped reading the stream"
    _stop: Any = None

    def _attempt(self, kind: str, data: bytes) -> bool:
        self.attempts.append(kind)
        if kind in self.fail_on:
            self.gone = True
            return False
        self.wire.append(data)
        if kind in self.stall_on:
            self.paused = True
        return True

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        for n, frame in enumerate(frames):
            if not self._attempt("event", frame):
                return False
            self.seqs.append(("event", first_seq + n))
        if gate := self.on_event.get(len(self.frames)):
            gate.set()
        return True

    def heartbeat(self) -> bool:
        ok = self._attempt("heartbeat", HEARTBEAT)
        if gate := self.on_heartbeat.get(self.wire.count(HEARTBEAT)):
            gate.set()
        return ok

    def on_stop(self, callback: Any) -> None:
        self._stop = callback

    def on_writable(self, callback: Any) -> None:
        pass

    def leave(self) -> None:
        """The client disconnects."""
        self.gone = True
        if self._stop is not None:
            self._stop(None)

    async def close(self, frames: list[bytes], first_seq: int, conclude: Any) -> bool:
        self.before_end = list(self.wire)
        self.write(frames, first_seq)
        terminal = conclude()
        self.last = b"".join(frames) + (terminal[0] if terminal else b"")
        if terminal is None:
            return False
        frame, seq = terminal
        if not self._attempt("terminal", frame):
            return False
        self.seqs.append(("terminal", seq))
        return True

    @property
    def frames(self) -> list[bytes]:
        """What was written, heartbeats left out."""
        return [b for b in self.wire if b != HEARTBEAT]


class Client:
    """The test's hand on a running relay: the client leaves, or something stops the stream."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.sink: Sink | None = None

    def leave(self, reason: PromptcastError | None = None) -> None:
        assert self.relay is not None and self.sink is not None
        if reason is None:
            self.sink.leave()
        else:
            self.relay.stop(reason)


async def relay(
    upstream: Upstream,
    sink: Sink | None = None,
    limits: Limits = TINY,
    client: Client | None = None,
) -> tuple[StreamStats, Sink]:
    sink = sink or Sink()
    running = Relay(Pump(upstream.__aiter__(), upstream.aclose), limits, "S")
    if client is not None:
        client.relay, client.sink = running, sink
    stats = await running.run(sink)
    return stats, sink


def error_data(frame: bytes) -> dict[str, Any]:
    (event,) = Decoder().feed(frame)
    data: dict[str, Any] = orjson.loads(event.data)
    return data


def check_invariants(upstream: Upstream, sink: Sink) -> None:
    """Closed exactly once; heartbeats are whole; terminal frames only at the end, at most one."""
    assert upstream.closed == 1
    for write in sink.wire:
        assert write == HEARTBEAT or (write.startswith(b"id: ") and write.endswith(b"\n\n"))
        assert b"\n\n" not in write[:-2]  # one write is one frame, never two, never half
    decoded = Decoder().feed(b"".join(sink.wire))
    assert len(decoded) == len(sink.frames)
    terminal = [i for i, e in enumerate(decoded)
                if (e.event, e.data) == ("message", "[DONE]") or e.event in ("error", "timeout")]
    assert terminal in ([], [len(decoded) - 1])
    assert [kind for kind, _ in sink.seqs].count("terminal") == len(terminal)


def test_heartbeat_bytes() -> None:
    assert HEARTBEAT == b": keep-alive\n\n"


# ------------------------------------------------------------------ normal run


async def test_normal_run_exact_bytes() -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1), Event(CHUNK_2, id="upstream-7"), DONE,
                             Event("after the end")])
        stats, sink = await relay(upstream)
    assert sink.wire == [
        f"id: S.1\ndata: {CHUNK_1}\n\n".encode(),
        f"id: S.2\ndata: {CHUNK_2}\n\n".encode(),
        b"id: S.3\ndata: [DONE]\n\n",
    ]
    assert sink.seqs == [("event", 1), ("event", 2), ("terminal", 3)]
    assert upstream.yielded == 3  # nothing read after [DONE]
    assert (stats.outcome, stats.chunks, stats.error_code) == (Outcome.DONE, 2, None)
    assert stats.stream_id == "S"
    assert stats.first_event_after is not None
    assert 0 <= stats.first_event_after <= stats.duration
    check_invariants(upstream, sink)


async def test_done_right_away() -> None:
    with anyio.fail_after(5):
        upstream = Upstream([DONE])
        stats, sink = await relay(upstream)
    assert sink.wire == [b"id: S.1\ndata: [DONE]\n\n"]
    assert (stats.outcome, stats.chunks) == (Outcome.DONE, 0)
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    ("event", "frame"),
    [
        (Event("line one\nline two"), b"id: S.1\ndata: line one\ndata: line two\n\n"),
        (Event("a\n\nb\n"), b"id: S.1\ndata: a\ndata: \ndata: b\ndata: \n\n"),
        (Event(""), b"id: S.1\ndata: \n\n"),
        (Event("  spaced  "), b"id: S.1\ndata:   spaced  \n\n"),
        (Event("x", event="progress"), b"id: S.1\nevent: progress\ndata: x\n\n"),
        (Event("[DONE]", event="progress"), b"id: S.1\nevent: progress\ndata: [DONE]\n\n"),
        (Event("[DONE] "), b"id: S.1\ndata: [DONE] \n\n"),
    ],
    ids=["multi-line", "blank-lines", "empty", "spaces", "named", "named-done", "not-done"],
)
async def test_event_framing(event: Event, frame: bytes) -> None:
    with anyio.fail_after(5):
        upstream = Upstream([event, DONE])
        stats, sink = await relay(upstream)
    assert sink.wire == [frame, b"id: S.2\ndata: [DONE]\n\n"]
    assert Decoder().feed(frame) == [Event(event.data, event.event, "S.1")]
    assert stats.chunks == 1
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    "data",
    [
        '{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}',
        '{"choices":[{"index":0,"delta":{},"usage":{"completion_tokens":3}}]}',
        '{"choices":[],"usage":{"prompt_tokens":"many"}}',
        '{"choices":[],"usage":{}',
        'not json, "usage":{ anyway',
    ],
    ids=["top-level", "nested", "odd-values", "truncated", "not-json"],
)
async def test_chunks_mentioning_usage_are_relayed_untouched(data: str) -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1), Event(data), DONE])
        stats, sink = await relay(upstream)
    assert sink.frames == [
        f"id: S.1\ndata: {CHUNK_1}\n\n".encode(),
        f"id: S.2\ndata: {data}\n\n".encode(),
        b"id: S.3\ndata: [DONE]\n\n",
    ]
    assert (stats.outcome, stats.chunks) == (Outcome.DONE, 2)
    check_invariants(upstream, sink)


# ------------------------------------------------------- terminal frames passed through

UPSTREAM_ERROR = '{"code": "rate_limited",  "message":"slow down", "extra": [1, 2]}'
UPSTREAM_TIMEOUT = '{"code":"timeout","message":"no first token within 3 s"}'


@pytest.mark.parametrize(
    ("event", "outcome", "code"),
    [
        (Event(UPSTREAM_ERROR, event="error"), Outcome.ERROR, "rate_limited"),
        (Event(UPSTREAM_TIMEOUT, event="timeout"), Outcome.TIMEOUT, "timeout"),
        (Event("not json at all", event="error"), Outcome.ERROR, None),
        (Event('["a list"]', event="error"), Outcome.ERROR, None),
        (Event("line 1\nline 2", event="error"), Outcome.ERROR, None),
    ],
)
async def test_upstream_terminal_frame_is_passed_through(
    event: Event, outcome: Outcome, code: str | None
) -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1), event, Event(CHUNK_2), DONE])
        stats, sink = await relay(upstream)
    assert sink.frames[0] == f"id: S.1\ndata: {CHUNK_1}\n\n".encode()
    terminal = sink.frames[-1]
    assert len(sink.frames) == 2
    assert Decoder().feed(terminal) == [Event(event.data, event.event, "S.2")]
    assert terminal.startswith(f"id: S.2\nevent: {event.event}\n".encode())
    assert (stats.outcome, stats.error_code, stats.chunks) == (outcome, code, 1)
    assert upstream.yielded == 2
    check_invariants(upstream, sink)


# ------------------------------------------------------------- errors mid-stream


@pytest.mark.parametrize("chunks", [0, 2])
async def test_stream_ending_without_done_is_an_error(chunks: int) -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1)] * chunks)
        stats, sink = await relay(upstream)
    assert len(sink.frames) == chunks + 1
    terminal = sink.frames[-1]
    assert terminal.startswith(f"id: S.{chunks + 1}\nevent: error\ndata: ".encode())
    assert error_data(terminal) == {
        "code": "upstream_closed",
        "message": "the upstream ended the stream before it was complete",
    }
    assert b"[DONE]" not in b"".join(sink.wire)
    assert (stats.outcome, stats.error_code, stats.chunks) == (Outcome.ERROR, "upstream_closed",
                                                               chunks)
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    ("error", "event", "code"),
    [
        (SSEProtocolError("SSE line longer than max_line_bytes=1024"), "error",
         "bad_upstream_stream"),
        (UpstreamError("the model service dropped the connection mid-stream",
                       code="upstream_closed"), "error", "upstream_closed"),
        (UpstreamError("rate limited", upstream_status=429), "error", "upstream_rate_limited"),
        (StreamTimeout("the provider gave up"), "timeout", "timeout"),
    ],
)
@pytest.mark.parametrize("chunks", [0, 1])
async def test_promptcast_error_mid_stream_becomes_its_frame(
    error: PromptcastError, event: str, code: str, chunks: int
) -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1)] * chunks + [error, DONE])
        stats, sink = await relay(upstream)
    assert len(sink.frames) == chunks + 1
    terminal = sink.frames[-1]
    assert terminal.startswith(f"id: S.{chunks + 1}\nevent: {event}\ndata: ".encode())
    assert error_data(terminal) == {"code": code, "message": error.message}
    expected = Outcome.TIMEOUT if event == "timeout" else Outcome.ERROR
    assert (stats.outcome, stats.error_code, stats.chunks) == (expected, code, chunks)
    check_invariants(upstream, sink)


async def test_unexpected_exception_is_an_internal_error_that_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "password=hunter2 at http://admin:hunter2@10.0.0.9:6379"
    with anyio.fail_after(5), caplog.at_level(logging.ERROR, "promptcast"):
        upstream = Upstream([Event(CHUNK_1), KeyError(secret), DONE])
        stats, sink = await relay(upstream)
    terminal = sink.frames[-1]
    assert terminal.startswith(b"id: S.2\nevent: error\ndata: ")
    data = error_data(terminal)
    assert data["code"] == "internal_error"
    assert "hunter2" not in terminal.decode()
    assert "10.0.0.9" not in terminal.decode()
    assert (stats.outcome, stats.error_code) == (Outcome.ERROR, "internal_error")
    # The operator still gets the details, in the log.
    assert any(r.exc_info for r in caplog.records)
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError(104, "Connection reset by peer"), TimeoutError("read timed out")],
    ids=["connection-reset", "timeout-error"],
)
async def test_oserror_from_the_upstream_is_an_error_not_a_gone_client(error: OSError) -> None:
    # The client is still there: it must learn that the stream failed.
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1), error, DONE])
        stats, sink = await relay(upstream)
    assert len(sink.frames) == 2
    assert sink.frames[-1].startswith(b"id: S.2\nevent: error\n")
    assert stats.outcome is Outcome.ERROR
    check_invariants(upstream, sink)


# --------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    ("steps", "message", "chunks"),
    [
        ([FOREVER], "no first token within 0.2 s", 0),
        ([Event(CHUNK_1), FOREVER], "no data from the model for 0.2 s", 1),
        ([Event(CHUNK_1), Event(CHUNK_2), FOREVER], "no data from the model for 0.2 s", 2),
        ([0.05], "the stream reached its 1 s limit", None),
    ],
    ids=["first-token", "idle", "idle-later", "total"],
)
async def test_timeouts_end_the_stream_with_a_timeout_frame(
    steps: list[Any], message: str, chunks: int | None
) -> None:
    with anyio.fail_after(5):
        upstream = Upstream(steps)
        stats, sink = await relay(upstream)
    n = len(sink.frames)
    terminal = sink.frames[-1]
    assert terminal == (
        f'id: S.{n}\nevent: timeout\ndata: {{"code":"timeout","message":"{message}"}}\n\n'
    ).encode()
    assert (stats.outcome, stats.error_code) == (Outcome.TIMEOUT, "timeout")
    assert stats.chunks == n - 1
    if chunks is not None:
        assert stats.chunks == chunks
    else:
        assert stats.chunks >= 1  # the trickle kept it alive until the total limit
    assert upstream.cancelled  # the upstream's pending read was stopped
    assert (stats.first_event_after is None) is (chunks == 0)
    check_invariants(upstream, sink)


async def test_total_timeout_is_reported_when_it_comes_before_the_first_token() -> None:
    limits = Limits(first_token_timeout=3, idle_timeout=3, total_timeout=0.2,
                    heartbeat_interval=0.05)
    with anyio.fail_after(5):
        upstream = Upstream([FOREVER])
        stats, sink = await relay(upstream, limits=limits)
    assert error_data(sink.frames[-1]) == {
        "code": "timeout", "message": "the stream reached its 0.2 s limit",
    }
    assert stats.outcome is Outcome.TIMEOUT
    check_invariants(upstream, sink)


# ------------------------------------------------------------------- heartbeats


async def test_heartbeats_fill_silence_before_and_between_events() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    sink = Sink(on_heartbeat={2: first, 4: second})
    multi_line = Event("part one\npart two\npart three")
    with anyio.fail_after(5):
        upstream = Upstream([first, multi_line, second, Event(CHUNK_2), DONE])
        stats, sink = await relay(upstream, sink, limits=PATIENT)
    assert len(sink.frames) == 3
    first_frame = sink.wire.index(sink.frames[0])
    assert sink.wire[:first_frame].count(HEARTBEAT) >= 2  # while waiting for the first token
    between = sink.wire[first_frame + 1 : sink.wire.index(sink.frames[1])]
    assert between and set(between) == {HEARTBEAT}
    assert (stats.outcome, stats.chunks) == (Outcome.DONE, 2)
    # Read back as a client would, the heartbeats are invisible.
    assert Decoder().feed(b"".join(sink.wire)) == [
        Event(multi_line.data, id="S.1"), Event(CHUNK_2, id="S.2"), Event("[DONE]", id="S.3"),
    ]
    check_invariants(upstream, sink)


async def test_no_heartbeats_when_they_are_switched_off() -> None:
    limits = Limits(first_token_timeout=0.2, idle_timeout=0.2, total_timeout=1,
                    heartbeat_interval=None)
    with anyio.fail_after(5):
        upstream = Upstream([FOREVER])
        stats, sink = await relay(upstream, limits=limits)
    assert HEARTBEAT not in sink.wire
    assert sink.wire == sink.frames and len(sink.frames) == 1
    assert stats.outcome is Outcome.TIMEOUT
    check_invariants(upstream, sink)


@pytest.mark.parametrize("heartbeat", [None, 10.0])
async def test_idle_limit_holds_when_the_first_event_comes_after_the_ticker_slept(
    heartbeat: float | None,
) -> None:
    # The ticker first sleeps towards the (long) first-token limit; the first
    # event must still bring the (short) idle limit into force. A producer of
    # a resumable stream runs without heartbeats: that was where it was missed.
    limits = Limits(first_token_timeout=30, idle_timeout=0.3, total_timeout=60,
                    heartbeat_interval=heartbeat)
    later = asyncio.Event()
    upstream = Upstream([later, Event(CHUNK_1), FOREVER])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            result: list[tuple[StreamStats, Sink]] = []

            async def run() -> None:
                result.append(await relay(upstream, limits=limits))

            tg.start_soon(run)
            await upstream.waiting.wait()  # the relay is waiting for the first event
            await asyncio.sleep(0.05)  # and its ticker has gone to sleep
            started = asyncio.get_running_loop().time()
            later.set()
    stats, sink = result[0]
    assert asyncio.get_running_loop().time() - started < 2  # not the 30 s first-token limit
    assert error_data(sink.frames[-1]) == {
        "code": "timeout", "message": "no data from the model for 0.3 s",
    }
    assert (stats.outcome, stats.chunks) == (Outcome.TIMEOUT, 1)
    check_invariants(upstream, sink)


# ------------------------------------------------------------------- disconnect


async def test_disconnect_mid_stream_stops_everything_without_a_terminal_frame() -> None:
    client = Client()
    written = asyncio.Event()
    sink = Sink(on_event={1: written})
    upstream = Upstream([Event(CHUNK_1), FOREVER])
    with anyio.fail_after(5):
        task = asyncio.ensure_future(relay(upstream, sink, limits=PATIENT, client=client))
        await written.wait()
        await upstream.waiting.wait()
        client.leave()
        stats, _ = await task
    assert sink.frames == [f"id: S.1\ndata: {CHUNK_1}\n\n".encode()]
    assert (stats.outcome, stats.error_code, stats.chunks) == (Outcome.CANCELLED, None, 1)
    assert upstream.cancelled
    check_invariants(upstream, sink)


async def test_disconnect_before_the_first_token() -> None:
    client = Client()
    upstream = Upstream([FOREVER, DONE])
    with anyio.fail_after(5):
        task = asyncio.ensure_future(relay(upstream, limits=PATIENT, client=client))
        await upstream.waiting.wait()
        client.leave()
        stats, sink = await task
    assert sink.frames == []
    assert (stats.outcome, stats.chunks, stats.first_event_after) == (Outcome.CANCELLED, 0, None)
    assert upstream.cancelled
    check_invariants(upstream, sink)


class Deleted(PromptcastError):
    status = 409
    code = "cancelled"


async def test_stopped_with_an_error_ends_the_stream_with_that_error() -> None:
    client = Client()
    upstream = Upstream([Event(CHUNK_1), FOREVER])
    with anyio.fail_after(5):
        task = asyncio.ensure_future(relay(upstream, limits=PATIENT, client=client))
        await upstream.waiting.wait()
        client.leave(Deleted("the stream was cancelled by its owner"))
        stats, sink = await task
    assert sink.frames[-1] == (
        b'id: S.2\nevent: error\ndata: {"code":"cancelled",'
        b'"message":"the stream was cancelled by its owner"}\n\n'
    )
    assert (stats.outcome, stats.error_code) == (Outcome.ERROR, "cancelled")
    check_invariants(upstream, sink)


async def test_server_shutdown_cancels_the_relay_and_still_closes_the_upstream() -> None:
    upstream = Upstream([Event(CHUNK_1), FOREVER])
    sink = Sink()
    with anyio.fail_after(5):
        task = asyncio.ensure_future(relay(upstream, sink, limits=PATIENT))
        await upstream.waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.frames == [f"id: S.1\ndata: {CHUNK_1}\n\n".encode()]
    check_invariants(upstream, sink)


# ------------------------------------------------------------- a client that is gone


@pytest.mark.parametrize(
    ("fail_on", "steps", "attempts"),
    [
        ("event", [Event(CHUNK_1), Event(CHUNK_2), DONE], ["event"]),
        ("terminal", [Event(CHUNK_1), DONE], ["event", "terminal"]),
        ("terminal", [Event(CHUNK_1)], ["event", "terminal"]),  # our own error frame
        ("heartbeat", [FOREVER, DONE], ["heartbeat"]),
    ],
)
async def test_write_raising_oserror_means_the_client_is_gone(
    fail_on: str, steps: list[Any], attempts: list[str]
) -> None:
    sink = Sink(fail_on=(fail_on,))
    with anyio.fail_after(5):
        upstream = Upstream(steps)
        stats, sink = await relay(upstream, sink, limits=PATIENT)
    assert sink.attempts == attempts  # nothing more is written to a gone client
    assert stats.outcome is Outcome.CANCELLED
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    ("fail_on", "outcome"),
    [((), Outcome.TIMEOUT), (("terminal",), Outcome.CANCELLED)],
    ids=["stalled-heartbeat", "stalled-heartbeat-and-gone"],
)
async def test_a_client_that_stops_reading_during_silence_does_not_hold_the_stream(
    fail_on: tuple[str, ...], outcome: Outcome
) -> None:
    sink = Sink(stall_on=("heartbeat",), fail_on=fail_on)
    with anyio.fail_after(5):
        upstream = Upstream([FOREVER, DONE])
        stats, sink = await relay(upstream, sink)
    # No more heartbeats queue up behind the first one the client left unread.
    assert sink.attempts == ["heartbeat", "terminal"]
    assert stats.outcome is outcome
    if outcome is Outcome.TIMEOUT:
        assert error_data(sink.frames[-1]) == {
            "code": "timeout", "message": "the client stopped reading the stream"}
    else:
        assert sink.frames == []
    check_invariants(upstream, sink)


# ------------------------------------------------------------------------ stats


async def test_stats_count_only_relayed_chunks() -> None:
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1)] * 5 + [DONE])
        stats, sink = await relay(upstream)
    assert stats.chunks == 5
    assert len(sink.frames) == 6
    assert stats.duration > 0
    check_invariants(upstream, sink)


async def test_first_event_after_measures_the_wait_for_the_first_event() -> None:
    gate = asyncio.Event()
    sink = Sink(on_heartbeat={1: gate})
    with anyio.fail_after(5):
        upstream = Upstream([gate, Event(CHUNK_1), DONE])
        stats, sink = await relay(upstream, sink, limits=PATIENT)
    # The first event came after a heartbeat, so after at least one heartbeat interval.
    assert stats.first_event_after is not None
    assert PATIENT.heartbeat_interval is not None
    assert stats.first_event_after >= PATIENT.heartbeat_interval * 0.9
    assert stats.first_event_after <= stats.duration
    check_invariants(upstream, sink)


# -- a pushing upstream: the read that ends a stream -----------------------------


class _Reads:
    """An upstream that pushes: each read is some listener calls, then `flush()`."""

    def __init__(self, *reads: Any) -> None:
        self.reads = reads
        self.closed = 0

    def push(self, listener: Any) -> None:
        for read in self.reads:
            read(listener)
            listener.flush()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed += 1


def _content(text: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


def _events(raw: bytes) -> list[Event]:
    decoder = Decoder()
    return [*decoder.feed(raw), *decoder.close()]


async def _pushed(events: _Reads, sink: Sink) -> StreamStats:
    stats = await Relay(events, PATIENT, "s").run(sink, Drain(5.0))
    assert events.closed == 1
    return stats


@pytest.mark.parametrize("heartbeat", [None, 15.0])
async def test_pushed_first_event_brings_a_sooner_idle_limit_into_force(
        heartbeat: float | None) -> None:
    # Armed for the (long) first-token limit, or the heartbeat; the first
    # event must bring the (short) idle limit into force.
    limits = Limits(first_token_timeout=30, idle_timeout=0.3, total_timeout=60,
                    heartbeat_interval=heartbeat)
    sink = Sink()
    with anyio.fail_after(5):
        stats = await Relay(_Reads(lambda up: up.data(_content("a"))), limits, "s").run(sink)
    assert (stats.outcome, stats.chunks) == (Outcome.TIMEOUT, 1)
    assert 0.25 < stats.duration < 2  # the idle limit, not the 30 s nor the 15 s heartbeat
    [error] = _events(sink.last)
    assert error_data(sink.last) == {
        "code": "timeout", "message": "no data from the model for 0.3 s"}
    assert error.event == "timeout"


async def test_an_error_in_the_last_read_follows_that_reads_events_in_one_frame_block() -> None:
    events = _Reads(lambda up: up.data(_content("a")),
                    lambda up: (up.data(_content("b")),
                                up.end(UpstreamError("cut off", code="upstream_closed"))))
    sink = Sink()
    stats = await _pushed(events, sink)
    # The first read went out at once; the last one waits for the terminal frame.
    assert [e.id for e in _events(sink.wire[0])] == ["s.1"]
    last = _events(sink.last)
    assert [(e.id, e.event) for e in last] == [("s.2", "message"), ("s.3", "error")]
    assert "b" in last[0].data and orjson.loads(last[1].data)["code"] == "upstream_closed"
    assert stats.outcome == Outcome.ERROR and stats.chunks == 2


async def test_a_whole_stream_in_one_read_is_left_whole_for_the_end_of_the_body() -> None:
    events = _Reads(lambda up: (up.data(_content("a")), up.data(_content("b")),
                                up.data(b"[DONE]")))
    sink = Sink()
    stats = await _pushed(events, sink)
    assert sink.attempts == ["event", "event", "terminal"]  # all at the end, as one piece
    assert [(e.id, e.data == "[DONE]") for e in _events(sink.last)] == [
        ("s.1", False), ("s.2", False), ("s.3", True)]
    assert stats.outcome == Outcome.DONE and stats.chunks == 2


def _run(*contents: bytes, done: bool = False) -> Any:
    """What `Decoder.feed_block` makes of plain events: one run of them."""
    lines = [b"data: " + c for c in contents] + ([b"data: [DONE]"] if done else [])
    return Run(b"".join(line + b"\n\n" for line in lines), lines, "")


async def test_a_run_of_plain_events_is_framed_as_those_events_one_by_one() -> None:
    usage = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3,
                                                   "completion_tokens": 5}})
    by_run = _Reads(lambda up: up.plain(_run(_content("a"), _content("b"))),
                    lambda up: up.plain(_run(_content("c"), usage, done=True)))
    one_by_one = _Reads(lambda up: (up.data(_content("a")), up.data(_content("b"))),
                        lambda up: (up.data(_content("c")), up.data(usage),
                                    up.data(b"[DONE]")))
    runs, each = Sink(), Sink()
    stats_runs = await _pushed(by_run, runs)
    stats_each = await _pushed(one_by_one, each)
    # The same bytes: the first event took the general path, the rest came framed at once.
    assert b"".join(runs.wire) == b"".join(each.wire) and runs.last == each.last
    assert [e.id for w in runs.before_end for e in _events(w)] == ["s.1", "s.2"]
    assert [e.id for e in _events(runs.last)] == ["s.3", "s.4", "s.5"]
    assert stats_runs.chunks == stats_each.chunks == 4
    assert stats_runs.completion_tokens == stats_each.completion_tokens == 5
    assert stats_runs.outcome == Outcome.DONE


async def test_done_inside_a_run_ends_the_stream_there() -> None:
    run = _run(_content("a"), _content("b"), done=True)
    late = Run(run.raw + b"data: late\n\n", [*run.lines, b"data: late"], "")
    events = _Reads(lambda up: up.data(_content("0")), lambda up: up.plain(late))
    sink = Sink()
    stats = await _pushed(events, sink)
    assert [e.data for e in _events(sink.last)][-1] == "[DONE]"
    assert b"late" not in b"".join(sink.wire)
    assert stats.chunks == 3 and stats.outcome == Outcome.DONE


# -- a producer's upstream reads go to the store themselves (StoreSink) ----------

STORING = Limits(first_token_timeout=30, idle_timeout=30, total_timeout=60,
                 heartbeat_interval=None)


class _Pushing:
    """An upstream that pushes when the test says: `read(...)` is one socket read."""

    def __init__(self) -> None:
        self.listener: Any = None
        self.pushing = asyncio.Event()
        self.pauses = self.resumes = self.closed = 0

    def push(self, listener: Any) -> None:
        self.listener = listener
        self.pushing.set()

    def read(self, *payloads: bytes) -> None:
        for payload in payloads:
            self.listener.data(payload)
        self.listener.flush()

    def pause(self) -> None:
        self.pauses += 1

    def resume(self) -> None:
        self.resumes += 1

    async def aclose(self) -> None:
        self.closed += 1


class _Store:
    """The streams store under a `StoreSink`: each frame taken without waiting gets a future
    the test settles."""

    def __init__(self, *, cap: int = 10_000) -> None:
        self.nowait: list[tuple[int, asyncio.Future[None]]] = []
        self.awaited: list[int] = []
        self.terminal_frames: list[tuple[int, bytes]] = []
        self.cap = cap

    def append_nowait(self, stream_id: str, seq: int, frame: bytes) -> asyncio.Future[None]:
        if seq > self.cap:
            raise StreamTooLarge(f"the stream reached its limit of {self.cap} events")
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.nowait.append((seq, stored))
        return stored

    def store_all(self) -> None:
        for _, stored in self.nowait:
            if not stored.done():
                stored.set_result(None)

    async def append(self, stream_id: str, seq: int, frame: bytes, *, terminal: bool) -> None:
        if terminal:
            self.terminal_frames.append((seq, frame))
        else:
            self.awaited.append(seq)


async def _started(upstream: _Pushing, store: _Store, limits: Limits = STORING
                   ) -> tuple[Relay, asyncio.Task[StreamStats]]:
    relay = Relay(upstream, limits, "s")
    task = asyncio.create_task(relay.run(StoreSink(store, "s")))  # type: ignore[arg-type]
    await upstream.pushing.wait()  # run's first step hands over the listener
    return relay, task


async def test_stored_frames_are_numbered_and_the_terminal_waits_for_those_on_their_way() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store)
    upstream.read(_content("a"), _content("b"))
    upstream.read(_content("c"), b"[DONE]")  # the last read: its event is held back
    await asyncio.sleep(0)
    assert [seq for seq, _ in store.nowait] == [1, 2]
    assert store.terminal_frames == [] and not task.done()  # 1 and 2 are not stored yet
    store.store_all()
    stats = await task
    assert store.awaited == [3]
    assert [(seq, _events(frame)[0].data) for seq, frame in store.terminal_frames] == [
        (4, "[DONE]")]
    assert stats.outcome == Outcome.DONE and stats.chunks == 3 and upstream.closed == 1


async def test_too_many_frames_on_their_way_pause_the_upstream_until_half_are_stored() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store)
    limit = resumable._MAX_UNSTORED
    for n in range(limit):
        upstream.read(_content(str(n)))
    assert upstream.pauses == 1 and upstream.resumes == 0
    for _, stored in store.nowait[: limit // 2 - 1]:
        stored.set_result(None)
    await asyncio.sleep(0)
    assert upstream.resumes == 0
    store.nowait[limit // 2 - 1][1].set_result(None)
    await asyncio.sleep(0)
    assert upstream.resumes == 1
    upstream.read(b"[DONE]")
    store.store_all()
    assert (await task).outcome == Outcome.DONE


async def test_a_frame_the_store_refuses_turns_even_a_done_stream_into_an_error() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store)
    upstream.read(_content("a"))
    upstream.read(b"[DONE]")
    store.nowait[0][1].set_exception(StoreUnavailable("the streams store (Redis) is unreachable"))
    stats = await task
    [(seq, frame)] = store.terminal_frames
    [event] = _events(frame)
    # Not [DONE]: frame 1 is missing, the stream is incomplete.
    assert (seq, event.event) == (3, "error")
    assert orjson.loads(event.data)["code"] == "store_unavailable"
    assert stats.outcome == Outcome.ERROR


async def test_a_stream_past_its_cap_ends_with_stream_too_large() -> None:
    upstream, store = _Pushing(), _Store(cap=2)
    _, task = await _started(upstream, store)
    upstream.read(_content("a"), _content("b"), _content("c"))
    store.store_all()
    stats = await task
    [(seq, frame)] = store.terminal_frames
    assert seq == 4 and orjson.loads(_events(frame)[0].data)["code"] == "stream_too_large"
    assert stats.outcome == Outcome.ERROR and upstream.closed == 1


async def test_a_stop_from_the_supervisor_ends_the_stream_with_its_reason() -> None:
    upstream, store = _Pushing(), _Store()
    relay, task = await _started(upstream, store)
    upstream.read(_content("a"))
    relay.stop(StreamStopped("the stream was cancelled"))
    store.store_all()
    stats = await task
    [(seq, frame)] = store.terminal_frames
    assert seq == 2 and _events(frame)[0].event == "error"
    assert orjson.loads(_events(frame)[0].data)["code"] == "cancelled"
    assert stats.outcome == Outcome.ERROR and upstream.closed == 1


async def test_a_stored_stream_that_keeps_coming_outlives_its_idle_limit() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store, Limits(
        first_token_timeout=5, idle_timeout=0.3, total_timeout=30, heartbeat_interval=None))
    for n in range(8):  # 0.8 s of chunks, 0.1 s apart: never idle for 0.3 s
        upstream.read(_content(str(n)))
        store.store_all()
        await asyncio.sleep(0.1)
    upstream.read(b"[DONE]")
    stats = await task
    assert stats.outcome == Outcome.DONE and stats.chunks == 8


async def test_a_stored_stream_with_heartbeats_configured_still_times_out() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store, TINY)
    stats = await asyncio.wait_for(task, 5)
    [(_, frame)] = store.terminal_frames
    assert _events(frame)[0].event == "timeout" and stats.outcome == Outcome.TIMEOUT


async def test_a_frame_the_store_drops_ends_the_stream_as_store_unavailable() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store)
    upstream.read(_content("a"))
    store.nowait[0][1].cancel()  # the store closed under it
    stats = await task
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "store_unavailable"
    assert stats.outcome == Outcome.ERROR


async def test_after_a_refusal_the_frames_held_back_are_not_stored() -> None:
    upstream, store = _Pushing(), _Store()
    _, task = await _started(upstream, store)
    upstream.read(_content("a"))
    upstream.read(_content("b"), b"[DONE]")  # "b" is held back for the end
    store.nowait[0][1].set_exception(StoreUnavailable("the streams store (Redis) is unreachable"))
    await task
    assert store.awaited == []  # "b" would have landed past the hole at 1
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "store_unavailable"


async def test_a_bug_while_storing_the_last_frames_ends_with_internal_error() -> None:
    class Broken(_Store):
        async def append(self, stream_id: str, seq: int, frame: bytes, *,
                         terminal: bool) -> None:
            if not terminal:
                raise RuntimeError("a bug")
            await super().append(stream_id, seq, frame, terminal=terminal)

    upstream, store = _Pushing(), Broken()
    _, task = await _started(upstream, store)
    upstream.read(_content("a"), b"[DONE]")
    stats = await task
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "internal_error"
    assert stats.outcome == Outcome.ERROR


# -- the tap: what the run recorder is given -----------------------------------------


async def test_the_tap_sees_exactly_what_the_reader_got() -> None:
    tapped: list[bytes] = []
    upstream = Upstream([Event(CHUNK_1), Event(CHUNK_2), DONE])
    sink = Sink()
    with anyio.fail_after(5):
        stats = await Relay(Pump(upstream.__aiter__(), upstream.aclose), PATIENT, "S",
                            tap=tapped.append).run(sink)
    assert stats.outcome is Outcome.DONE
    assert b"".join(tapped) == b"".join(sink.frames)  # heartbeats are not the stream's


async def test_the_tap_sees_the_last_reads_frames_and_our_own_terminal() -> None:
    tapped: list[bytes] = []
    events = _Reads(lambda up: up.data(_content("a")),
                    lambda up: (up.data(_content("b")),
                                up.end(UpstreamError("cut off", code="upstream_closed"))))
    sink = Sink()
    with anyio.fail_after(5):
        await Relay(events, PATIENT, "s", tap=tapped.append).run(sink)
    assert b"".join(tapped) == b"".join(sink.frames)
    assert [e.event for e in _events(tapped[-1])] == ["error"]
