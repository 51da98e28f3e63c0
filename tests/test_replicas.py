"""Several real promptcast processes sharing one real Redis: resume anywhere, survive a death."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from promptcast.wire.sse import Event

from .conftest import Process, RedisServer
from .sse_client import events_of, get_stream, post_stream
from .test_resumable import content_of, read_some
from .upstream_double import Script, UpstreamDouble

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PROMPT = {"prompt": "You are a helpful support bot.", "resumable": True}


async def test_start_on_one_replica_resume_on_another(
    replicas: Callable[..., list[Process]], upstream: UpstreamDouble
) -> None:
    a, b = replicas()
    pieces = [f"p{i} " for i in range(40)]
    upstream.enqueue(Script.chat(pieces, gap=0.01))
    stream_id, first = await read_some(f"{a.url}/optimize-stream", PROMPT, 9)
    rest = await get_stream(f"{b.url}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": first[-1].id})
    events = first + rest.events
    assert [e.id for e in events] == [f"{stream_id}.{n}" for n in range(1, len(events) + 1)]
    assert content_of(events) == "".join(pieces)
    assert events[-1].data == "[DONE]"
    # Replica B can also cancel what replica A generates.
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    other_id, _ = await read_some(f"{a.url}/optimize-stream", PROMPT, 2)
    async with httpx.AsyncClient() as client:
        assert (await client.delete(f"{b.url}/optimize-stream/{other_id}")).status_code == 202
    # Replica A learns of the cancel when it next renews its lease (each
    # second); the bound is against a cancel that never arrives, and leaves
    # room for a slow spell of a shared machine (3 s once failed in a full run).
    assert await upstream.until(lambda: upstream.client_closed == 1, 10.0)


async def test_the_generating_replica_dies_and_readers_are_told(
    replicas: Callable[..., list[Process]], upstream: UpstreamDouble
) -> None:
    a, b = replicas()
    upstream.enqueue(Script.chat(["tok"] * 2000, gap=0.02))
    stream_id, first = await read_some(f"{a.url}/optimize-stream", PROMPT, 3)
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "GET", f"{b.url}/optimize-stream/{stream_id}", headers={"Last-Event-ID": first[-1].id}
    ) as response:
        events: list[Event] = []
        async for event in events_of(response):
            events.append(event)
            if len(events) == 5:
                a.proc.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
        lost_after = time.monotonic() - killed_at
    assert events[-1].event == "error"
    assert '"code":"producer_lost"' in events[-1].data
    assert "[DONE]" not in [e.data for e in events]
    # The lease is 1.5 s, renewed each second; allow for a loaded machine.
    assert lost_after < 6.0


async def test_redis_stopping_mid_stream_ends_readers_and_spares_others(
    replicas: Callable[..., list[Process]], upstream: UpstreamDouble, redis_server: RedisServer
) -> None:
    (a,) = replicas(1)
    upstream.enqueue(Script.chat(["tok"] * 2000, gap=0.02))
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "POST", f"{a.url}/optimize-stream", json=PROMPT
    ) as response:
        events: list[Event] = []
        async for event in events_of(response):
            events.append(event)
            if len(events) == 3:
                redis_server.stop()
                stopped_at = time.monotonic()
        ended_after = time.monotonic() - stopped_at
    assert events[-1].event == "error"
    assert '"code":"store_unavailable"' in events[-1].data
    assert ended_after < 8.0
    # The producer gave up on its upstream too.
    assert await upstream.until(lambda: upstream.open_connections == 0, 8.0)
    # Streams that need no store are still served.
    plain = await post_stream(f"{a.url}/optimize-stream", {"prompt": "still here"})
    assert plain.status == 200 and plain.terminal.data == "[DONE]"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{a.url}/healthz")).status_code == 200
