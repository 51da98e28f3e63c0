"""Providers: one file each, chosen by a model entry's `provider` key (registry.py)."""

from __future__ import annotations

from promptcast.providers.base import (
    ChatChunk,
    ChatRequest,
    ChunkListener,
    ChunkStream,
    Message,
    Provider,
    PushChunks,
)
from promptcast.providers.registry import (
    ProviderContext,
    ProviderFactories,
    ProviderFactory,
    ProviderLoadError,
    ProviderRegistry,
    installed_providers,
)

__all__ = [
    "ChatChunk", "ChatRequest", "ChunkListener", "ChunkStream", "Message", "Provider",
    "ProviderContext", "ProviderFactories", "ProviderFactory", "ProviderLoadError",
    "ProviderRegistry", "PushChunks", "installed_providers",
]
