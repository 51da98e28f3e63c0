"""The model service: modes become chat messages, names become providers."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson

from promptcast.errors import UpstreamError
from promptcast.models import ModelTable
from promptcast.providers import ChatRequest, ChunkStream, ProviderRegistry
from promptcast.service.prompts import build_messages, echo_stops
from promptcast.service.schemas import OptimizeRequest
from promptcast.service.templates import Values, render

# Worth trying the next model for: the upstream is down, slow or rate-limited,
# not a request the next one would refuse as well.
_RETRIABLE = {"upstream_unreachable", "upstream_timeout", "upstream_rate_limited",
              "upstream_unavailable", "upstream_error"}


class ModelService:
    """Opens chunk streams for optimize requests and raw chat requests."""

    def __init__(self, models: ModelTable, providers: ProviderRegistry) -> None:
        self.models = models
        self.providers = providers

    def chat_request(self, request: OptimizeRequest, request_id: str | None = None) -> ChatRequest:
        """The chat request that rewrites `request.prompt` in its mode (or by its template)."""
        if request.template_text is not None:
            messages = render(request.template_text, Values(
                request.prompt, opening=request.opening, target_chars=request.target_chars,
                previous=request.previous, feedback=request.feedback),
                request.template_language)
        else:
            messages = build_messages(
                request.prompt, request.mode,
                opening=request.opening, target_chars=request.target_chars,
                previous=request.previous, feedback=request.feedback,
            )
        return ChatRequest(model=request.model, messages=messages, request_id=request_id)

    async def optimize(
        self, request: OptimizeRequest, request_id: str | None = None
    ) -> ChunkStream:
        """Start rewriting `request.prompt`; raises before the first chunk if it cannot."""
        stops = echo_stops(request.prompt, opening=request.opening,
                           previous=request.previous, feedback=request.feedback)
        return await self.chat(self.chat_request(request, request_id), local_stops=stops)

    async def chat(self, request: ChatRequest, *, local_stops: tuple[str, ...] = ()) -> ChunkStream:
        """Open a stream on the named model, or on its fallbacks if the upstream fails first.

        `local_stops` go to the embedded model only: it echoes its quoted input, a
        large model does not, and some reject `stop` (or more than four of them).
        """
        spec = self.models.get(request.model)
        candidates = [spec, *(self.models.get(name) for name in spec.fallbacks)]
        last: UpstreamError | None = None
        for candidate in candidates:
            stop = request.stop + local_stops if candidate.provider == "llama" else request.stop
            try:
                return await self.providers.get(candidate).stream_chat(
                    replace(request, model=candidate.name, stop=stop)
                )
            except UpstreamError as exc:
                if exc.error_code not in _RETRIABLE:
                    raise
                last = exc
        assert last is not None
        raise last


async def collect(stream: ChunkStream, model: str) -> dict[str, Any]:
    """Drain `stream` into one `chat.completion` object (for `stream: false`)."""
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    completion_id = ""
    created = int(time.time())
    try:
        async for chunk in stream:
            if not completion_id:
                head = orjson.loads(chunk.data)
                completion_id = str(head.get("id", ""))
                created = int(head.get("created", created))
            parts.append(chunk.content)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
    finally:
        await stream.aclose()
    return {
        "id": completion_id or "chatcmpl-promptcast",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(parts)},
            "finish_reason": finish or "stop",
        }],
        "usage": usage,
    }
