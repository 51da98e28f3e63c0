"""Relay sinks that keep what a stream said, for an answer given whole at its end.

The relay writes framed events (`id: …` + `data: …`); an `EventSink` reads
them back with the SSE decoder and keeps what its kind of stream carries: a
rewrite's or a bot's text (`TextSink`), an evaluation's finished cells and
summary (`EvalSink`). After each write that brought news it calls `grew()`,
and `news()` says what is new since it was last asked, as progress. The
terminal frame says how the stream ended: `[DONE]`, or the error (code and
message) it ended with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from promptcast.errors import PromptcastError
from promptcast.relay.sink import Conclude, Stopped
from promptcast.wire import sse

# Progress since the last report: how far (a count), out of how much if known, and what is new.
News = tuple[float, float | None, str]


class StreamFailed(PromptcastError):
    """A stream that ended with an error frame: its code and message, passed on as they were."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self._code = code

    @property
    def error_code(self) -> str:
        return self._code


class EventSink:
    """`relay.sink.Sink` for a caller that wants the result: never paused, nothing to
    heartbeat. Subclasses keep what their events carry (`_take`) and tell it (`news`)."""

    def __init__(self) -> None:
        self.error: StreamFailed | None = None
        self.grew: Callable[[], object] = lambda: None
        self._decoder = sse.Decoder()
        self._gone = False
        self._on_stop: Stopped | None = None

    def _take(self, event: sse.Event) -> bool:
        """Keep what a (non-terminal) event says; True if it is news to report."""
        raise NotImplementedError

    def news(self) -> News | None:
        """What is new since the last call, or None."""
        raise NotImplementedError

    @property
    def paused(self) -> bool:
        return False

    @property
    def gone(self) -> bool:
        return self._gone

    @property
    def per_event(self) -> bool:
        return False

    @property
    def stall(self) -> str:
        return "the caller stopped reading"  # never paused: never said

    def leave(self) -> None:
        """The caller left (cancelled the call): the relay settles and closes the upstream."""
        if not self._gone:
            self._gone = True
            callback, self._on_stop = self._on_stop, None
            if callback is not None:
                callback(None)

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        if self._gone:
            return False
        news = False
        for frame in frames:
            for event in self._decoder.feed(frame):
                news = self._event(event) or news
        if news:
            self.grew()
        return True

    def heartbeat(self) -> bool:
        return not self._gone

    def on_stop(self, callback: Stopped | None) -> None:
        self._on_stop = callback

    def on_writable(self, callback: Callable[[], object] | None) -> None:
        """Never paused: nothing to call back."""

    async def close(self, frames: list[bytes], first_seq: int, conclude: Conclude) -> bool:
        self.write(frames, first_seq)
        terminal = conclude()
        if terminal is None:
            return False
        for event in self._decoder.feed(terminal[0]):
            self._event(event)
        return True

    def _event(self, event: sse.Event) -> bool:
        if event.event in sse.TERMINAL_TYPES:
            try:
                error = orjson.loads(event.data)
                error = error.get("error", error)  # OpenAI's shape or ours
                self.error = StreamFailed(str(error["code"]), str(error["message"]))
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
                self.error = StreamFailed("upstream_error", event.data)
            return False
        if event.data == sse.DONE_DATA:
            return False
        return self._take(event)


def _json(data: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class TextSink(EventSink):
    """A chat completion's chunks: the text, its finish reason and usage."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None
        self._told = 0  # parts already in news
        self._chars = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _take(self, event: sse.Event) -> bool:
        chunk = _json(event.data)
        if chunk is None:
            return False
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        before = len(self.parts)
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
                content = (choice.get("delta") or {}).get("content")
                if isinstance(content, str) and content:
                    self.parts.append(content)
        return len(self.parts) > before

    def news(self) -> News | None:
        """The characters so far, and the text since the last news."""
        if len(self.parts) == self._told:
            return None
        new = "".join(self.parts[self._told:])
        self._told = len(self.parts)
        self._chars += len(new)
        return float(self._chars), None, new


class EvalSink(EventSink):
    """An evaluation run's events: each finished cell and judgement as news, then its summary."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.summary: dict[str, Any] | None = None
        self._expected = expected
        self._done = 0
        self._lines: list[str] = []

    def _take(self, event: sse.Event) -> bool:
        payload = _json(event.data)
        if payload is None:
            return False
        if event.event == "summary":
            self.summary = payload
            return False
        line = _cell_line(payload) if event.event == "cell" else (
            _judgement_line(payload) if event.event == "judgement" else None)
        if line is None:
            return False
        self._done += 1
        self._lines.append(line)
        return True

    def news(self) -> News | None:
        """The cells and judgements finished so far, of all the run will make; what they said."""
        if not self._lines:
            return None
        lines, self._lines = self._lines, []
        return float(self._done), float(self._expected), "\n".join(lines)


def _cell_line(cell: dict[str, Any]) -> str:
    where = f"{cell.get('prompt')} × case {cell.get('case')}"
    error = cell.get("error")
    if isinstance(error, dict):
        return f"answer {where}: {error.get('code')}"
    checks = [c for c in cell.get("checks") or () if isinstance(c, dict)]
    passed = sum(1 for c in checks if c.get("pass"))
    return f"answer {where}: " + (f"{passed}/{len(checks)} checks passed" if checks
                                  else "answered")


def _judgement_line(judgement: dict[str, Any]) -> str:
    pair = judgement.get("pair")
    case = judgement.get("case")
    if isinstance(pair, list):
        where = f"{' vs '.join(str(p) for p in pair)} on case {case}"
        outcome = judgement.get("winner")
    else:
        where = f"{judgement.get('prompt')} × case {case}"
        score = judgement.get("score")
        outcome = f"{score}/10" if score is not None else None
    if outcome is None:
        error = judgement.get("error")
        outcome = error.get("code") if isinstance(error, dict) else "no verdict"
    return f"judgement {where}: {outcome}"
