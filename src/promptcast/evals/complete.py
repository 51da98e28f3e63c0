"""One streamed completion for a run: a real stream from the model service, read to its end.

The stream limits of a single stream apply to each completion (no first
token within `first_token`, a gap over `idle`, longer than `total`: a
timeout), and a 429 is retried after its Retry-After, at most `max_retries`
times; a Retry-After longer than `max_retry_wait` fails at once, since
nobody wants a run to sleep for an hour.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from promptcast.errors import PromptcastError, StreamTimeout, UpstreamError
from promptcast.providers.base import ChatRequest, ChunkStream
from promptcast.settings import Settings

RATE_LIMITED = "upstream_rate_limited"
# Time for a run's last events (its summary) after the slowest completion.
RUN_MARGIN = 30.0


class ChatOpener(Protocol):
    """What opens a chunk stream: `service.model_service.ModelService`."""

    async def chat(self, request: ChatRequest) -> ChunkStream: ...


@dataclass(frozen=True, slots=True)
class CompletionLimits:
    first_token: float
    idle: float
    total: float
    max_retries: int = 3
    max_retry_wait: float = 60.0

    @classmethod
    def from_settings(cls, s: Settings) -> CompletionLimits:
        """A single stream's limits, from the settings, for each of a run's completions."""
        return cls(first_token=s.first_token_timeout, idle=s.idle_timeout, total=s.total_timeout,
                   max_retry_wait=s.eval_max_retry_wait)

    def longest(self) -> float:
        """The longest one completion can take, retries and their waits included."""
        return ((self.max_retries + 1) * (self.total + self.first_token)
                + self.max_retries * self.max_retry_wait)

    def run_gap(self, run_limit: float) -> float:
        """The longest a run may go without an event, within the run's own limit: one
        completion at its longest, and time for the run's last events (its summary) after."""
        return min(run_limit, self.longest() + RUN_MARGIN)


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer: its text, usage (None if the upstream reported none), timings."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    first_token_s: float | None
    latency_s: float
    attempts: int
    finish_reason: str | None


class CompletionFailed(PromptcastError):
    """A completion's error, with how many attempts were made (429s retried)."""

    def __init__(self, error: PromptcastError, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts

    @property
    def error_code(self) -> str:
        return self.error.error_code


def retry_after(error: UpstreamError, attempt: int, now: float | None = None) -> float:
    """Seconds to wait before retrying a 429: its Retry-After (seconds or an HTTP date),
    else an exponential back-off of 1, 2, 4 s."""
    value = error.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return float(2 ** attempt)


async def complete(opener: ChatOpener, request: ChatRequest, limits: CompletionLimits, *,
                   on_delta: Callable[[str], Awaitable[None]] | None = None) -> Completion:
    """Stream `request` to its end; `CompletionFailed` says why it could not."""
    attempt = 0
    while True:
        try:
            return await _attempt(opener, request, limits, on_delta, attempt + 1)
        except UpstreamError as exc:
            if exc.error_code != RATE_LIMITED or attempt >= limits.max_retries:
                raise CompletionFailed(exc, attempt + 1) from None
            wait = retry_after(exc, attempt)
            if not math.isfinite(wait) or wait > limits.max_retry_wait:
                raise CompletionFailed(exc, attempt + 1) from None
            attempt += 1
            await asyncio.sleep(wait)
        except PromptcastError as exc:
            raise CompletionFailed(exc, attempt + 1) from None


async def _attempt(opener: ChatOpener, request: ChatRequest, limits: CompletionLimits,
                   on_delta: Callable[[str], Awaitable[None]] | None,
                   attempts: int) -> Completion:
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + limits.total
    first: float | None = None
    parts: list[str] = []
    usage: dict[str, object] | None = None
    finish: str | None = None
    stream: ChunkStream | None = None
    try:
        async with asyncio.timeout(min(start + limits.first_token, end)) as deadline:
            stream = await opener.chat(request)
            async for chunk in stream:
                now = loop.time()
                if chunk.content:
                    if first is None:
                        first = now - start
                    parts.append(chunk.content)
                    if on_delta is not None:
                        await on_delta(chunk.content)
                if chunk.usage is not None:
                    usage = chunk.usage
                finish = chunk.finish_reason or finish
                if first is not None:
                    deadline.reschedule(min(now + limits.idle, end))
    except TimeoutError:
        now = loop.time()
        if now >= end:
            reason = f"the answer took longer than {limits.total:g} s"
        elif first is None:
            reason = f"no first token within {limits.first_token:g} s"
        else:
            reason = f"no data from the model for {limits.idle:g} s"
        raise StreamTimeout(reason) from None
    finally:
        if stream is not None:
            await stream.aclose()
    return Completion(
        text="".join(parts),
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
        first_token_s=first,
        latency_s=loop.time() - start,
        attempts=attempts,
        finish_reason=finish,
    )


def _count(usage: dict[str, object] | None, key: str) -> int | None:
    value = None if usage is None else usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
