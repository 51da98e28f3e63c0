"""A relay's sink that keeps the text a stream carries, for an answer given whole at its end.

The relay writes framed events (`id: …` + `data: <chunk>`); this sink reads
them back with the SSE decoder, keeps each chunk's content delta, and calls
`grew()` after each write, so the caller can report progress. The terminal
frame says how the stream ended: `[DONE]`, or the error (code and message) it
ended with.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from promptcast.errors import PromptcastError
from promptcast.relay.sink import Conclude, Stopped
from promptcast.wire import sse


class StreamFailed(PromptcastError):
    """A stream that ended with an error frame: its code and message, passed on as they were."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self._code = code

    @property
    def error_code(self) -> str:
        return self._code


class TextSink:
    """`relay.sink.Sink` for a caller that wants the text: never paused, nothing to heartbeat."""

    def __init__(self, grew: Callable[[], object] = lambda: None) -> None:
        self.parts: list[str] = []
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None
        self.error: StreamFailed | None = None
        self._grew = grew
        self._decoder = sse.Decoder()
        self._gone = False
        self._on_stop: Stopped | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

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
        before = len(self.parts)
        for frame in frames:
            for event in self._decoder.feed(frame):
                self._take(event)
        if len(self.parts) > before:
            self._grew()
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
            self._take(event)
        return True

    def _take(self, event: sse.Event) -> None:
        if event.event in sse.TERMINAL_TYPES:
            try:
                error = orjson.loads(event.data)
                error = error.get("error", error)  # OpenAI's shape or ours
                self.error = StreamFailed(str(error["code"]), str(error["message"]))
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
                self.error = StreamFailed("upstream_error", event.data)
            return
        if event.data == sse.DONE_DATA:
            return
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
                content = (choice.get("delta") or {}).get("content")
                if isinstance(content, str) and content:
                    self.parts.append(content)
