"""One tool call's stream: opened, relayed into a `TextSink`, its growth reported, ended once.

    open the upstream ── bounded by the first-token limit; a refusal raises its error
        ▼
    Relay(upstream, limits).run(sink) in a task of its own: the same limits, drain
    and terminal frame as any stream (an evaluation run: its own limits)
        │ the sink grew ──▶ the call's task reports its news (a progress notification)
        ▼
    the answer, or the error the stream ended with (its code and message)

Cancelling the call (`notifications/cancelled`, the client leaving, shutdown)
makes the sink's reader leave: the relay settles and closes the upstream at
once, and the call waits for that, shielded, before it lets the cancellation on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from promptcast import ids
from promptcast.errors import PromptcastError, StreamTimeout
from promptcast.mcp_server.services import Services
from promptcast.mcp_server.sink import EventSink, TextSink
from promptcast.ops.logs import log_stream
from promptcast.relay.relay import Limits, Relay, StreamStats, Upstream
from promptcast.service.run_records import Capture

# How far (a count), out of how much if known, and what is new since the last report.
Report = Callable[[float, float | None, str], Awaitable[None]]
# A stream's run record, by its stream id (None when the library does not record).
Record = Callable[[str], Capture | None]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a chat stream said, whole."""

    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Call:
    """How one call's stream is named in logs and metrics."""

    tool: str
    model: str
    mode: str
    label: str  # the model as the caller named it: what a refusal is counted under
    request_id: str


async def stream_text(services: Services, call: Call,
                      opening: Callable[[], Awaitable[Upstream]], report: Report,
                      record: Record | None = None) -> Answer:
    """Open a chat stream, relay it to its end, and return its text; raises the error it
    ended with."""
    sink = TextSink()
    await relay_into(services, call, opening, sink, report, record=record)
    return Answer(sink.text, sink.finish_reason, sink.usage)


async def relay_into(services: Services, call: Call, opening: Callable[[], Awaitable[Upstream]],
                     sink: EventSink, report: Report, limits: Limits | None = None, *,
                     record: Record | None = None) -> None:
    """Open a stream and relay it into `sink` to its end (with `limits`, else a single
    stream's); raises the error it ended with. `record` gives the stream's run record.

    `report` is called from this task with the sink's news, never twice at once:
    what arrives meanwhile goes in the next report.
    """
    upstream = await _opened(services, call, opening)
    progress = _Progress(sink, report)
    sink.grew = progress.grew
    stream_id = ids.stream_id()
    capture = record(stream_id) if record is not None else None
    relay = Relay(upstream, limits or services.limits, stream_id,
                  tap=None if capture is None else capture.write)
    services.metrics.started(call.model)
    run = asyncio.ensure_future(relay.run(sink, services.drain))
    try:
        while not run.done():
            growth: asyncio.Future[Any] = progress.next_growth()
            await asyncio.wait((run, growth), return_when=asyncio.FIRST_COMPLETED)
            await progress.send()
    except BaseException:
        # Cancelled (or our report failed): the reader leaves, the upstream closes.
        sink.leave()
        with anyio.CancelScope(shield=True):
            _finished(services, call, await run, capture)
        raise
    _finished(services, call, run.result(), capture)
    if sink.error is not None:
        raise sink.error


async def _opened(services: Services, call: Call,
                  opening: Callable[[], Awaitable[Upstream]]) -> Upstream:
    limit = services.settings.first_token_timeout
    try:
        async with asyncio.timeout(limit):
            return await opening()
    except TimeoutError:
        error: PromptcastError = StreamTimeout(
            f"the model did not start answering within {limit:g} s")
    except PromptcastError as exc:
        error = exc
    services.metrics.error(call.label, error.error_code)
    raise error


def _finished(services: Services, call: Call, stats: StreamStats,
              capture: Capture | None) -> None:
    log_stream(stats, model=call.model, mode=call.mode, request_id=call.request_id,
               path=f"mcp:{call.tool}")
    services.metrics.finished(stats, call.model)
    if capture is not None:
        capture.finish(stats)


class _Progress:
    """A sink's news since the last report, sent as one progress notification."""

    def __init__(self, sink: EventSink, report: Report) -> None:
        self._sink = sink
        self._report = report
        self._waiter: asyncio.Future[None] | None = None
        self._pending = False

    def grew(self) -> None:
        self._pending = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def next_growth(self) -> asyncio.Future[None]:
        """A future done once the sink has news not yet reported (at once if it has now)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        if self._pending:
            waiter.set_result(None)
        return waiter

    async def send(self) -> None:
        self._pending = False
        news = self._sink.news()
        if news is None:
            return
        # A client that cannot take a notification any more is leaving; its call's
        # cancellation, not this, ends the stream.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._report(*news)
