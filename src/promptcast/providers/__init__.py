"""Providers: one file each, chosen by a model entry's `provider` key."""

from __future__ import annotations

from promptcast.models import ModelSpec
from promptcast.providers.base import (
    ChatChunk,
    ChatRequest,
    ChunkStream,
    Message,
    Provider,
)
from promptcast.providers.llama import LlamaProvider
from promptcast.providers.openai_compat import OpenAICompatProvider
from promptcast.redact import Redactor
from promptcast.settings import Settings
from promptcast.wire.http_client import HTTPClient

__all__ = [
    "ChatChunk", "ChatRequest", "ChunkStream", "Message", "Provider", "ProviderRegistry",
]


class ProviderRegistry:
    """One provider instance per model entry, created on first use and closed together."""

    def __init__(self, settings: Settings, client: HTTPClient, redactor: Redactor) -> None:
        self._settings = settings
        self._client = client
        self._redactor = redactor
        self._providers: dict[str, Provider] = {}

    def get(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec.name)
        if provider is None:
            provider = self._create(spec)
            self._providers[spec.name] = provider
        return provider

    def _create(self, spec: ModelSpec) -> Provider:
        s = self._settings
        if spec.provider == "llama":
            return LlamaProvider(
                spec,
                model_path=s.local_model_path,
                queue_size=s.local_queue_size,
                max_tokens=spec.max_tokens or s.local_max_tokens,
                context=s.local_context,
                threads=s.local_threads,
            )
        return OpenAICompatProvider(
            spec, self._client, redactor=self._redactor, max_event_bytes=s.max_event_bytes
        )

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
