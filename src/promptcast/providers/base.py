"""What a provider is: something that turns chat messages into a stream of OpenAI chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from promptcast.wire.pump import Pump
from promptcast.wire.sse import DONE, Event, EventListener


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
    # Whether pushed streams pass usage-only chunks on (the OpenAI API's
    # `stream_options.include_usage`); iterated ones always yield them.
    include_usage: bool = True


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One `chat.completion.chunk`: `data` is its JSON text, relayed untouched."""

    data: str
    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


class ChunkStream(Protocol):
    """An open stream of chunks; `aclose()` stops the upstream work.

    Iterated, it yields `ChatChunk`s (`collect`, the command line, evaluations).
    Pushed, it hands a listener SSE events from its upstream's reads: each
    chunk's JSON as `data` (usage-only chunks left out unless the request's
    `include_usage`), then `[DONE]`, or `end(error)`; this is how the relay
    takes it, with no task per chunk. A provider whose stream can only be
    iterated gets push mode from `PullStream`.
    """

    def __aiter__(self) -> AsyncIterator[ChatChunk]: ...

    def push(self, listener: EventListener) -> None: ...

    def pause(self) -> None:
        """Stop reading from the upstream until `resume()` (push mode's flow control)."""

    def resume(self) -> None: ...

    async def aclose(self) -> None: ...


def relayed(chunk: ChatChunk, include_usage: bool) -> bool:
    """Whether a pushed stream passes `chunk` on: all but usage-only ones nobody asked for."""
    return include_usage or chunk.usage is None or bool(chunk.content or chunk.finish_reason)


class PullStream:
    """Base of a chunk stream that can only be iterated: push mode by a task (`wire.pump`).

    Subclasses give `__aiter__` (the chunks) and `_close()` (release what they hold).
    """

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._pump: Pump | None = None

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError

    async def _close(self) -> None:
        """Stop the work and release it; called once pushing (if any) has stopped."""

    def push(self, listener: EventListener) -> None:
        self._pump = Pump(self._events())
        self._pump.push(listener)

    async def _events(self) -> AsyncIterator[Event]:
        async for chunk in self:
            if relayed(chunk, self._include_usage):
                yield Event(chunk.data)
        yield DONE

    def pause(self) -> None:
        if self._pump is not None:
            self._pump.pause()

    def resume(self) -> None:
        if self._pump is not None:
            self._pump.resume()

    async def aclose(self) -> None:
        if self._pump is not None:
            await self._pump.aclose()
        await self._close()


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
