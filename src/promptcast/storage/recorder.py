"""The run recorder: every stream's record, written in batches, never awaited by a stream.

    stream ──tap──▶ Capture.write(frames)      the bytes the relay wrote, kept as they are
    stream end ───▶ Capture.finish(stats)      one deque append (or a drop, counted)
                         │
    writer task ◀────────┘  waits LINGER for more, takes up to BATCH; frames → text
                            here, off the streams' path; one INSERT per batch
         database down ──▶  the batch waits and is retried (backoff up to 5 s) while
                            new records queue behind it, up to the bound; past the
                            bound they are dropped: counted (/metrics), and a warning

A stream never waits for any of it, and a database outage never ends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from typing import Any, Protocol

import orjson

from promptcast.errors import DatabaseUnavailable
from promptcast.storage.fields import RUN_TEXT_CHARS
from promptcast.storage.runs import RunRecord, Runs
from promptcast.storage.tables import now_us
from promptcast.wire.sse import Decoder

log = logging.getLogger("promptcast.recorder")

BATCH = 200
# After the first record of a batch, wait this long for more: one transaction for many
# streams, not one each (a transaction costs as much CPU as dozens of rows).
LINGER = 0.25
# The frames a capture keeps: enough for RUN_TEXT_CHARS of text (JSON framing is ~4×).
CAPTURE_BYTES = RUN_TEXT_CHARS * 4
_RETRY_MAX = 5.0
_WARN_EVERY = 10.0


class Stats(Protocol):
    """What the relay knows of a finished stream (relay.StreamStats has it all)."""

    @property
    def outcome(self) -> str: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def chunks(self) -> int: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def first_event_after(self) -> float | None: ...
    @property
    def duration(self) -> float: ...


class Capture:
    """One stream's frames as the relay writes them, and what its record needs besides."""

    __slots__ = ("_recorder", "created_at", "full", "input", "kind", "mode", "model", "owner",
                 "parts", "request", "run_id", "size", "template")

    def __init__(self, recorder: Recorder, run_id: str, *, owner: str, kind: str, model: str,
                 mode: str | None, request: dict[str, Any], input: str,
                 template: str | None) -> None:
        self._recorder = recorder
        self.run_id = run_id
        self.owner = owner
        self.kind = kind
        self.model = model
        self.mode = mode
        self.request = request
        self.input = input
        self.template = template
        self.created_at = now_us()
        self.parts: list[bytes] = []
        self.size = 0
        self.full = False

    def write(self, frames: bytes) -> None:
        """The relay's tap: the bytes it wrote to the client (or the store)."""
        if self.size < CAPTURE_BYTES:
            self.parts.append(frames)
            self.size += len(frames)
        else:
            self.full = True

    def finish(self, stats: Stats) -> None:
        """The stream ended: queue its record. Returns at once, whatever the database does."""
        self._recorder.submit(_Finished(self, str(stats.outcome), stats.error_code, stats.chunks,
                                        stats.prompt_tokens, stats.completion_tokens,
                                        stats.first_event_after, stats.duration))


class _Finished:
    __slots__ = ("capture", "chunks", "completion_tokens", "duration", "error_code",
                 "first_event_after", "outcome", "prompt_tokens")

    def __init__(self, capture: Capture, outcome: str, error_code: str | None, chunks: int,
                 prompt_tokens: int, completion_tokens: int, first_event_after: float | None,
                 duration: float) -> None:
        self.capture = capture
        self.outcome = outcome
        self.error_code = error_code
        self.chunks = chunks
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.first_event_after = first_event_after
        self.duration = duration

    def record(self) -> RunRecord:
        """SSE frames → the run's text and error message: the writer's work, not the stream's."""
        c = self.capture
        data = b"".join(c.parts)
        text = deltas_text(data)
        message = error_message(data) if self.error_code else None
        truncated = c.full or len(text) > RUN_TEXT_CHARS
        return RunRecord(
            id=c.run_id, owner=c.owner, kind=c.kind, model=c.model, mode=c.mode,
            request=c.request, input=c.input, template=c.template, outcome=self.outcome,
            error_code=self.error_code, error_message=message if self.error_code else None,
            text=text[:RUN_TEXT_CHARS], truncated=truncated, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, chunks=self.chunks,
            ttft_ms=None if self.first_event_after is None
            else round(self.first_event_after * 1000, 1),
            duration_ms=round(self.duration * 1000, 1), created_at=c.created_at,
        )


# A chunk's `"content"` string literal: runs of plain bytes and backslash escapes.
_CONTENT_LITERAL = re.compile(rb'"content":"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_EVENT = b"\nevent: "


def frames_text(data: bytes) -> tuple[str, str | None]:
    """The text of a stream's chunk frames, and its error frame's message if it has one."""
    return deltas_text(data), error_message(data)


def deltas_text(data: bytes) -> str:
    """The `"content"` strings of the chunks in `data`, joined: the stream's text.

    Not a JSON parse of each chunk: that costs more CPU than relaying it
    (docs/benchmarks.md). One regular-expression pass finds each chunk's
    `"content":"` key (inside a JSON string it would be escaped, `\\"content\\"`)
    and its string literal up to the first unescaped quote; one JSON parse
    decodes all of them.
    """
    literals = _CONTENT_LITERAL.findall(data)
    if not literals:
        return ""
    try:
        texts: list[str] = orjson.loads(b'["' + b'","'.join(literals) + b'"]')
    except orjson.JSONDecodeError:  # one bad literal: keep the others
        texts = []
        for literal in literals:
            with contextlib.suppress(orjson.JSONDecodeError):
                texts.append(orjson.loads(b'"' + literal + b'"'))
    return "".join(texts)


def error_message(data: bytes) -> str | None:
    """The message of the `event: error`/`timeout` frame that ends `data`, if one does."""
    start = data.rfind(_EVENT)
    if start < 0:
        if not data.startswith(b"event: "):
            return None
        start = -1
    for event in Decoder().feed(data[start + 1:]):
        if event.event in ("error", "timeout"):
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                body = orjson.loads(event.data)
                body = body.get("error", body) if isinstance(body, dict) else {}
                return str(body.get("message", "")) or None
    return None


class Recorder:
    """Queues run records and writes them in batches from its own task (`run`)."""

    def __init__(self, runs: Runs, *, bound: int, batch: int = BATCH) -> None:
        self.runs = runs
        self.bound = bound
        self.batch = batch
        self._queue: deque[_Finished | RunRecord] = deque()
        self._held = 0  # records taken for a batch that is not written yet
        self._wake: asyncio.Future[None] | None = None
        self.written = 0
        self.dropped = 0
        self._dropped_since_warning = 0
        self._warned_at = -_WARN_EVERY
        self.failing: str | None = None  # why the last write failed, while it does

    @property
    def queued(self) -> int:
        """Records waiting for the database (including a batch being retried)."""
        return len(self._queue) + self._held

    def capture(self, run_id: str, *, owner: str, kind: str, model: str, mode: str | None,
                request: dict[str, Any], input: str, template: str | None = None) -> Capture:
        """Start capturing one stream (its tap is `capture.write`)."""
        return Capture(self, run_id, owner=owner, kind=kind, model=model, mode=mode,
                       request=request, input=input, template=template)

    def record(self, record: RunRecord) -> None:
        """Queue a record built elsewhere (an evaluation's cell, say); never waits."""
        self.submit(record)

    def submit(self, item: _Finished | RunRecord) -> None:
        if self.queued >= self.bound:
            self.dropped += 1
            self._dropped_since_warning += 1
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY:
                log.warning("dropped %d run record(s): %d are waiting for the database (%s)",
                            self._dropped_since_warning, self.queued,
                            self.failing or "it is slower than the streams")
                self._warned_at = now
                self._dropped_since_warning = 0
            return
        self._queue.append(item)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def run(self, linger: float = LINGER) -> None:
        """The writer: forever, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            if len(self._queue) < self.batch:
                await asyncio.sleep(linger)
            await self._write_batch()

    async def _write_batch(self) -> None:
        queue = self._queue
        items = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
        self._held = len(items)
        try:
            records = [item if isinstance(item, RunRecord) else item.record() for item in items]
            delay = 0.1
            while True:
                try:
                    await self.runs.insert(records)
                    break
                except DatabaseUnavailable as exc:
                    if self.failing is None:
                        log.warning("run records wait for the database: %s", exc.message)
                    self.failing = exc.message
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
            if self.failing is not None:
                log.warning("the database is back: writing run records again")
                self.failing = None
            self.written += len(records)
        except asyncio.CancelledError:
            # Put the batch back in front: `flush` may still write it.
            queue.extendleft(reversed(items))
            raise
        except Exception:
            # A record the database refuses whatever we do: lose this batch, not the writer.
            log.exception("dropped %d run record(s) the database refused", len(items))
            self.dropped += len(items)
        finally:
            self._held = 0

    async def flush(self, seconds: float) -> None:
        """Write what is queued, for at most `seconds` (at shutdown, after the writer stopped)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._queue:
                    await self._write_batch()
        if self._queue:
            log.warning("%d run record(s) not written at shutdown: the database did not take "
                        "them in time", len(self._queue))
