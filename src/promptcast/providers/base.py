"""What a provider is: something that turns chat messages into a stream of OpenAI chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from promptcast.errors import PromptcastError
from promptcast.wire.sse import Run


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A provider-neutral chat completion request."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One `chat.completion.chunk`: `data` is its JSON text, relayed untouched."""

    data: str
    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


class ChunkStream(Protocol):
    """An open stream of chunks; `aclose()` stops the upstream work."""

    def __aiter__(self) -> AsyncIterator[ChatChunk]: ...

    async def aclose(self) -> None: ...


class ChunkListener(Protocol):
    """Takes a pushed chunk stream's chunks inside the upstream's read callback.

    `passthrough` and `flush` are attributes, read once when pushing starts, so
    a listener that only forwards them can hand over its own listener's: each
    chunk then skips a call.
    """

    # A plain content chunk (no finish, usage or error), left unparsed: its JSON, UTF-8.
    passthrough: Callable[[bytes], None]
    # Several, as the upstream sent them (`sse.Decoder.feed_block`), each a plain
    # content chunk.
    passthrough_run: Callable[[Run], None]
    # The chunks of one upstream read were all handed over. Also called for
    # reads that end after the stream did (until it is closed): a no-op then.
    flush: Callable[[], None]

    def chunk(self, chunk: ChatChunk) -> None: ...

    def end(self, error: PromptcastError | None) -> None:
        """None: the stream completed; else why it failed."""


class PushChunks(Protocol):
    """A chunk stream that can push (HTTP providers); the embedded model only pulls."""

    def push(self, listener: ChunkListener) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class Provider(Protocol):
    """A source of chat completions.

    `stream_chat` does everything that can fail before the first chunk (connect,
    status, admission) and raises a `PromptcastError` then; the returned stream
    raises one only for failures after that.
    """

    async def stream_chat(self, request: ChatRequest) -> ChunkStream: ...

    async def aclose(self) -> None: ...


def make_chunk(
    completion_id: str,
    created: int,
    model: str,
    *,
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> ChatChunk:
    """Build a chunk we originate (the embedded model, the aggregated fallback)."""
    choices: list[dict[str, Any]] = []
    if content is not None or role is not None or finish_reason is not None:
        delta: dict[str, str] = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        choices.append({"index": 0, "delta": delta, "finish_reason": finish_reason})
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return ChatChunk(
        data=orjson.dumps(body).decode(),
        content=content or "",
        finish_reason=finish_reason,
        usage=usage,
    )
