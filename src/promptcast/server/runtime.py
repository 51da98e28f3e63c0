"""The resources the routes share, opened when the app starts and closed when it stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from promptcast.ops.metrics import Metrics
from promptcast.providers import ProviderRegistry
from promptcast.providers.llama import LlamaProvider
from promptcast.redact import Redactor
from promptcast.relay.drain import Drain
from promptcast.relay.resumable import Producer
from promptcast.relay.source import HttpSource, InProcessSource, Source
from promptcast.relay.stats import Limits
from promptcast.relay.streams import StreamStore
from promptcast.relay.streams.memory import MemoryStore
from promptcast.relay.streams.redis import RedisStore
from promptcast.service.model_service import ModelService
from promptcast.settings import Settings
from promptcast.storage.library import Library, open_library
from promptcast.wire.choose import choose_transport
from promptcast.wire.transport import Transport


@dataclass(slots=True)
class Runtime:
    """What the routes share: the lifespan state's `runtime`."""

    settings: Settings
    client: Transport
    service: ModelService
    gateway: Source
    local_source: Source
    limits: Limits
    store: StreamStore
    producers: dict[str, Producer]
    tasks: set[asyncio.Task[None]]
    drain: Drain
    metrics: Metrics
    library: Library | None = None  # None: no database configured (issue 20)


def _store(settings: Settings) -> StreamStore:
    if settings.redis_url:
        return RedisStore(
            settings.redis_url,
            ttl=settings.stream_ttl,
            max_events=settings.stream_max_events,
            max_stream_bytes=settings.stream_max_bytes,
            lease_ttl=settings.lease_ttl,
            running_ttl=settings.total_timeout + settings.resume_grace + 60,
        )
    return MemoryStore(
        ttl=settings.stream_ttl,
        max_events=settings.stream_max_events,
        max_stream_bytes=settings.stream_max_bytes,
        max_total_bytes=settings.store_max_bytes,
    )


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, drain: Drain, metrics: Metrics
                       ) -> AsyncIterator[Runtime]:
    """Open the upstream transport, providers, sources and store; close them all at the end."""
    client = choose_transport(settings)
    registry = ProviderRegistry(settings, client, Redactor(settings.secrets()))
    service = ModelService(settings.models, registry)
    local: Source = InProcessSource(service)
    gateway: Source = (
        HttpSource(client, settings.upstream_url, max_event_bytes=settings.max_event_bytes)
        if settings.upstream_url else local
    )
    limits = Limits(
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
        total_timeout=settings.total_timeout,
        heartbeat_interval=settings.heartbeat_interval,
    )
    store = _store(settings)
    runtime = Runtime(settings, client, service, gateway, local, limits, store, {}, set(),
                      drain, metrics)
    exits = contextlib.AsyncExitStack()
    if settings.database_url:
        # Migrates first: a database that cannot be reached or migrated stops the start.
        try:
            runtime.library = await exits.enter_async_context(open_library(
                settings.database_url, record_runs=settings.record_runs,
                record_queue=settings.record_queue))
        except BaseException:
            await store.aclose()
            await registry.aclose()
            await client.aclose()
            raise
        metrics.recorder = runtime.library.recorder
    default = settings.models.get_spec(settings.models.default)
    if default.provider == "llama" and not settings.upstream_url:
        # Load the embedded model now, off the loop, so the first request
        # does not pay for it.
        provider = registry.get(default)
        if isinstance(provider, LlamaProvider):
            warm = asyncio.get_running_loop().create_task(provider.warm_up())
            runtime.tasks.add(warm)
            warm.add_done_callback(runtime.tasks.discard)
    try:
        yield runtime
    finally:
        for task in list(runtime.tasks):
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        # After the streams: their records are queued by now, and get written.
        await exits.aclose()
        await store.aclose()
        await registry.aclose()
        await client.aclose()
