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
from promptcast.relay import relay as relay_module
from promptcast.relay.drain import Drain
from promptcast.relay.relay import HEARTBEAT, Limits, Outcome, Relay, StreamStats
from promptcast.wire.sse import Decoder, Event, Run

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
    """A scripted event stream.

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
    """Records what the client would receive, as bytes, in order.

    `fail_on` names the calls ("event", "terminal", "heartbeat") that raise
    OSError, as a socket to a gone client does; `hang_on` those that never return.
    `on_heartbeat` maps a heartbeat count to an asyncio.Event to set.
    """

    wire: list[bytes] = field(default_factory=list)
    seqs: list[tuple[str, int]] = field(default_factory=list)
    fail_on: tuple[str, ...] = ()
    hang_on: tuple[str, ...] = ()
    attempts: list[str] = field(default_factory=list)
    on_heartbeat: dict[int, asyncio.Event] = field(default_factory=dict)
    on_event: dict[int, asyncio.Event] = field(default_factory=dict)

    async def _write(self, kind: str, frame: bytes) -> None:
        self.attempts.append(kind)
        if kind in self.fail_on:
            raise BrokenPipeError(32, "Broken pipe")
        if kind in self.hang_on:
            await asyncio.Event().wait()
        self.wire.append(frame)

    async def event(self, seq: int, frame: bytes) -> None:
        await self._write("event", frame)
        self.seqs.append(("event", seq))
        if gate := self.on_event.get(len(self.frames)):
            gate.set()

    async def terminal(self, seq: int, frame: bytes) -> None:
        await self._write("terminal", frame)
        self.seqs.append(("terminal", seq))

    async def heartbeat(self) -> None:
        await self._write("heartbeat", HEARTBEAT)
        if gate := self.on_heartbeat.get(self.wire.count(HEARTBEAT)):
            gate.set()

    @property
    def frames(self) -> list[bytes]:
        """What was written, heartbeats left out."""
        return [b for b in self.wire if b != HEARTBEAT]


class Client:
    """The `stopped` callable: returns when the test says the client left (or what to end with)."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()
        self._reason: PromptcastError | None = None

    def leave(self, reason: PromptcastError | None = None) -> None:
        self._reason = reason
        self._gone.set()

    async def stopped(self) -> PromptcastError | None:
        await self._gone.wait()
        return self._reason


async def relay(
    upstream: Upstream,
    sink: Sink | None = None,
    limits: Limits = TINY,
    client: Client | None = None,
) -> tuple[StreamStats, Sink]:
    sink = sink or Sink()
    stats = await Relay(upstream, limits, "S").run(sink, (client or Client()).stopped)
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
    with anyio.fail_after(5), caplog.at_level(logging.ERROR, "promptcast.relay"):
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
    assert any(r.exc_info and "S" in r.getMessage() for r in caplog.records)
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


async def test_a_client_that_never_takes_the_terminal_frame_does_not_hold_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "_TERMINAL_WRITE_TIMEOUT", 0.1)
    sink = Sink(hang_on=("terminal",))
    with anyio.fail_after(5):
        upstream = Upstream([Event(CHUNK_1), DONE])
        stats, sink = await relay(upstream, sink)
    assert sink.attempts == ["event", "terminal"]
    assert stats.outcome is Outcome.CANCELLED
    check_invariants(upstream, sink)


@pytest.mark.parametrize(
    ("hang_on", "outcome"),
    [(("heartbeat",), Outcome.TIMEOUT), (("heartbeat", "terminal"), Outcome.CANCELLED)],
    ids=["stalled-heartbeat", "stalled-heartbeat-and-terminal"],
)
async def test_a_client_that_stops_reading_during_silence_does_not_hold_the_stream(
    monkeypatch: pytest.MonkeyPatch, hang_on: tuple[str, ...], outcome: Outcome
) -> None:
    monkeypatch.setattr(relay_module, "_TERMINAL_WRITE_TIMEOUT", 0.1)
    sink = Sink(hang_on=hang_on)
    with anyio.fail_after(5):
        upstream = Upstream([FOREVER, DONE])
        stats, sink = await relay(upstream, sink)
    assert sink.attempts == ["heartbeat", "terminal"]
    assert stats.outcome is outcome
    if outcome is Outcome.TIMEOUT:
        assert error_data(sink.frames[-1])["code"] == "timeout"
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


# -- run_direct: the read that ends a stream ------------------------------------


class _Channel:
    """The client's connection for `run_direct`: records each direct write."""

    def __init__(self, *, paused: bool = False) -> None:
        self.writes: list[bytes] = []
        self.gone = False
        self.paused = paused

    def write(self, frame: bytes) -> bool:
        self.writes.append(frame)
        return True

    def on_gone(self, callback: Any) -> None:
        pass

    def on_writable(self, callback: Any) -> None:
        pass


class _Reads:
    """An upstream that pushes: each read is some listener calls, then `flush()`."""

    def __init__(self, *reads: Any) -> None:
        self.reads = reads
        self.closed = 0

    def can_push(self) -> bool:
        return True

    def push(self, listener: Any) -> None:
        for read in self.reads:
            read(listener)
            listener.flush()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def _content(text: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


def _events(raw: bytes) -> list[Event]:
    decoder = Decoder()
    return [*decoder.feed(raw), *decoder.close()]


async def _run_direct(events: _Reads, channel: _Channel) -> tuple[Relay, StreamStats]:
    relay = Relay(events, PATIENT, "s")  # type: ignore[arg-type]
    stats = await relay.run_direct(channel, Drain(5.0))  # type: ignore[arg-type]
    assert events.closed == 1
    return relay, stats


@pytest.mark.parametrize("heartbeat", [None, 15.0])
async def test_pushed_first_event_brings_a_sooner_idle_limit_into_force(
        heartbeat: float | None) -> None:
    # Armed for the (long) first-token limit, or the heartbeat; the first
    # event must bring the (short) idle limit into force.
    limits = Limits(first_token_timeout=30, idle_timeout=0.3, total_timeout=60,
                    heartbeat_interval=heartbeat)
    relay = Relay(_Reads(lambda up: up.data(_content("a"))), limits, "s")  # type: ignore[arg-type]
    channel = _Channel()
    with anyio.fail_after(5):
        stats = await relay.run_direct(channel, Drain(5.0))  # type: ignore[arg-type]
    assert (stats.outcome, stats.chunks) == (Outcome.TIMEOUT, 1)
    assert 0.25 < stats.duration < 2  # the idle limit, not the 30 s nor the 15 s heartbeat
    [error] = _events(relay.last_frame)
    assert error_data(relay.last_frame) == {
        "code": "timeout", "message": "no data from the model for 0.3 s"}
    assert error.event == "timeout"


async def test_an_error_in_the_last_read_follows_that_reads_events_in_one_frame_block() -> None:
    events = _Reads(lambda up: up.data(_content("a")),
                    lambda up: (up.data(_content("b")),
                                up.end(UpstreamError("cut off", code="upstream_closed"))))
    channel = _Channel()
    relay, stats = await _run_direct(events, channel)
    # The first read went out at once; the last one waits for the terminal frame.
    assert [e.id for w in channel.writes for e in _events(w)] == ["s.1"]
    last = _events(relay.last_frame)
    assert [(e.id, e.event) for e in last] == [("s.2", "message"), ("s.3", "error")]
    assert "b" in last[0].data and orjson.loads(last[1].data)["code"] == "upstream_closed"
    assert stats.outcome == Outcome.ERROR and stats.chunks == 2


async def test_a_paused_client_gets_the_last_events_and_the_terminal_frame_in_one_write() -> None:
    events = _Reads(lambda up: up.data(_content("a")),
                    lambda up: (up.data(_content("b")), up.data(b"[DONE]")))
    channel = _Channel(paused=True)
    relay, stats = await _run_direct(events, channel)
    # Not left for the end of the body, which waits for the client to drain.
    assert relay.last_frame == b""
    assert [[e.id for e in _events(w)] for w in channel.writes] == [["s.1"], ["s.2", "s.3"]]
    assert _events(channel.writes[-1])[-1].data == "[DONE]"
    assert stats.outcome == Outcome.DONE


async def test_a_whole_stream_in_one_read_is_left_whole_for_the_end_of_the_body() -> None:
    events = _Reads(lambda up: (up.data(_content("a")), up.data(_content("b")),
                                up.data(b"[DONE]")))
    channel = _Channel()
    relay, stats = await _run_direct(events, channel)
    assert channel.writes == []
    assert [(e.id, e.data == "[DONE]") for e in _events(relay.last_frame)] == [
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
    runs, each = _Channel(), _Channel()
    relay_runs, stats_runs = await _run_direct(by_run, runs)
    relay_each, stats_each = await _run_direct(one_by_one, each)
    # The same bytes: the first event took the general path, the rest came framed at once.
    assert runs.writes == each.writes and relay_runs.last_frame == relay_each.last_frame
    assert [e.id for w in runs.writes for e in _events(w)] == ["s.1", "s.2"]
    assert [e.id for e in _events(relay_runs.last_frame)] == ["s.3", "s.4", "s.5"]
    assert stats_runs.chunks == stats_each.chunks == 4
    assert stats_runs.completion_tokens == stats_each.completion_tokens == 5
    assert stats_runs.outcome == Outcome.DONE


async def test_done_inside_a_run_ends_the_stream_there() -> None:
    run = _run(_content("a"), _content("b"), done=True)
    late = Run(run.raw + b"data: late\n\n", [*run.lines, b"data: late"], "")
    events = _Reads(lambda up: up.data(_content("0")), lambda up: up.plain(late))
    relay, stats = await _run_direct(events, _Channel())
    assert [e.data for e in _events(relay.last_frame)][-1] == "[DONE]"
    assert b"late" not in relay.last_frame
    assert stats.chunks == 3 and stats.outcome == Outcome.DONE


# -- run_stored: a producer's upstream reads go to the store themselves ----------

STORING = Limits(first_token_timeout=30, idle_timeout=30, total_timeout=60,
                 heartbeat_interval=None)


class _Pushing:
    """An upstream that pushes when the test says: `read(...)` is one socket read."""

    def __init__(self) -> None:
        self.listener: Any = None
        self.pushing = asyncio.Event()
        self.pauses = self.resumes = self.closed = 0

    def can_push(self) -> bool:
        return True

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

    def close(self) -> None:
        self.closed += 1


class _Store:
    """The producer's sink: each frame taken without waiting gets a future the test settles."""

    def __init__(self, *, cap: int = 10_000) -> None:
        self.nowait: list[tuple[int, asyncio.Future[None]]] = []
        self.awaited: list[int] = []
        self.terminal_frames: list[tuple[int, bytes]] = []
        self.cap = cap

    def append_nowait(self, seq: int, frame: bytes) -> asyncio.Future[None]:
        if seq > self.cap:
            raise StreamTooLarge(f"the stream reached its limit of {self.cap} events")
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.nowait.append((seq, stored))
        return stored

    def store_all(self) -> None:
        for _, stored in self.nowait:
            if not stored.done():
                stored.set_result(None)

    async def event(self, seq: int, frame: bytes) -> None:
        self.awaited.append(seq)

    async def terminal(self, seq: int, frame: bytes) -> None:
        self.terminal_frames.append((seq, frame))

    async def heartbeat(self) -> None:
        raise AssertionError("a store gets no heartbeats")


async def _never_stopped() -> PromptcastError | None:
    await asyncio.Event().wait()
    return None


async def _started(upstream: _Pushing, store: _Store, stopped: Any = _never_stopped
                   ) -> asyncio.Task[StreamStats]:
    relay = Relay(upstream, STORING, "s")  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run_stored(store, stopped))  # type: ignore[arg-type]
    await upstream.pushing.wait()  # run_stored's first step hands over the listener
    return task


async def test_stored_frames_are_numbered_and_the_terminal_waits_for_those_on_their_way() -> None:
    upstream, store = _Pushing(), _Store()
    task = await _started(upstream, store)
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
    task = await _started(upstream, store)
    limit = relay_module._MAX_UNSTORED
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
    task = await _started(upstream, store)
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
    task = await _started(upstream, store)
    upstream.read(_content("a"), _content("b"), _content("c"))
    store.store_all()
    stats = await task
    [(seq, frame)] = store.terminal_frames
    assert seq == 4 and orjson.loads(_events(frame)[0].data)["code"] == "stream_too_large"
    assert stats.outcome == Outcome.ERROR and upstream.closed == 1


async def test_a_stop_from_the_supervisor_ends_the_stream_with_its_reason() -> None:
    upstream, store = _Pushing(), _Store()
    stop = asyncio.Event()

    async def stopped() -> PromptcastError:
        await stop.wait()
        return StreamStopped("the stream was cancelled")

    task = await _started(upstream, store, stopped)
    upstream.read(_content("a"))
    stop.set()
    store.store_all()
    stats = await task
    [(seq, frame)] = store.terminal_frames
    assert seq == 2 and _events(frame)[0].event == "error"
    assert orjson.loads(_events(frame)[0].data)["code"] == "cancelled"
    assert stats.outcome == Outcome.ERROR and upstream.closed == 1


async def test_a_stored_stream_that_keeps_coming_outlives_its_idle_limit() -> None:
    upstream, store = _Pushing(), _Store()
    relay = Relay(upstream, Limits(first_token_timeout=5, idle_timeout=0.3, total_timeout=30,
                                   heartbeat_interval=None), "s")  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run_stored(store, _never_stopped))  # type: ignore[arg-type]
    await upstream.pushing.wait()
    for n in range(8):  # 0.8 s of chunks, 0.1 s apart: never idle for 0.3 s
        upstream.read(_content(str(n)))
        store.store_all()
        await asyncio.sleep(0.1)
    upstream.read(b"[DONE]")
    stats = await task
    assert stats.outcome == Outcome.DONE and stats.chunks == 8


async def test_a_stored_stream_with_heartbeats_configured_still_times_out() -> None:
    upstream, store = _Pushing(), _Store()
    relay = Relay(upstream, TINY, "s")  # type: ignore[arg-type]
    stats = await asyncio.wait_for(relay.run_stored(store, _never_stopped), 5)  # type: ignore[arg-type]
    [(_, frame)] = store.terminal_frames
    assert _events(frame)[0].event == "timeout" and stats.outcome == Outcome.TIMEOUT


async def test_a_frame_the_store_drops_ends_the_stream_as_store_unavailable() -> None:
    upstream, store = _Pushing(), _Store()
    task = await _started(upstream, store)
    upstream.read(_content("a"))
    store.nowait[0][1].cancel()  # the store closed under it
    stats = await task
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "store_unavailable"
    assert stats.outcome == Outcome.ERROR


async def test_after_a_refusal_the_frames_held_back_are_not_stored() -> None:
    upstream, store = _Pushing(), _Store()
    task = await _started(upstream, store)
    upstream.read(_content("a"))
    upstream.read(_content("b"), b"[DONE]")  # "b" is held back for the end
    store.nowait[0][1].set_exception(StoreUnavailable("the streams store (Redis) is unreachable"))
    await task
    assert store.awaited == []  # "b" would have landed past the hole at 1
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "store_unavailable"


async def test_a_bug_while_storing_the_last_frames_ends_with_internal_error() -> None:
    class Broken(_Store):
        async def event(self, seq: int, frame: bytes) -> None:
            raise RuntimeError("a bug")

    upstream, store = _Pushing(), Broken()
    task = await _started(upstream, store)
    upstream.read(_content("a"), b"[DONE]")
    stats = await task
    [(_, frame)] = store.terminal_frames
    assert orjson.loads(_events(frame)[0].data)["code"] == "internal_error"
    assert stats.outcome == Outcome.ERROR
