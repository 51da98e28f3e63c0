"""Providers: one file each, chosen by a model entry's `provider` key (registry.py)."""

from __future__ import annotations

from promptcast.providers.base import (
    ChatChunk,
    ChatRequest,
    ChunkStream,
    Message,
    Provider,
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
    "ChatChunk", "ChatRequest", "ChunkStream", "Message", "Provider", "ProviderContext",
    "ProviderFactories", "ProviderFactory", "ProviderLoadError", "ProviderRegistry",
    "installed_providers",
]
