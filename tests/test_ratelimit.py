"""Limits per key or client address: requests per minute and concurrent streams, in memory
and shared through Redis; every way a stream ends gives its slot back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.types import Message, Receive, Scope, Send

from promptcast.ops.ratelimit import MemoryLimiter, RateLimitMiddleware
from promptcast.settings import Settings, SettingsError

from . import asgi_stub
from .asgi_stub import Inner
from .conftest import Process, RedisServer, RunningServer, free_port
from .sse_client import events_of, post_stream
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "You are a helpful support bot."}
KEY_A = "pc-live-alpha-7f3a9c1e5b"
KEY_B = "pc-live-bravo-2d8e4f6a0c"


def addr(ip: str) -> dict[str, str]:
    # uvicorn trusts X-Forwarded-For from loopback, as from a proxy in front of it.
    return {"X-Forwarded-For": ip}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def admitted(url: str, headers: dict[str, str] | None = None,
                   within: float = 3.0) -> bool:
    """Whether a stream request gets past the stream cap within `within` seconds.

    The probe is a POST with an invalid body: past the cap it gets the 422 of
    validation (and holds its slot only for that instant), at the cap a 429."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            response = await client.post(f"{url}/optimize-stream", json={},
                                         headers=headers or {})
            if response.status_code != 429:
                assert response.status_code == 422, response.text
                return True
            assert response.json()["error"]["code"] == "too_many_streams"
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)


# -- requests per minute --------------------------------------------------------

async def test_the_request_over_the_limit_gets_429_with_retry_after(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve(rate_limit_per_minute=3)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            assert (await client.get(f"{server.url}/v1/models")).status_code == 200
        over = await client.get(f"{server.url}/v1/models")
        stream = await client.post(f"{server.url}/optimize-stream", json=PROMPT)
        probes = [await client.get(f"{server.url}{path}")
                  for path in ("/healthz", "/readyz", "/", "/static/app.js")]
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.json()["error"]["code"] == "rate_limited"
    assert "more than 3 requests in a minute" in over.json()["error"]["message"]
    assert stream.status_code == 429   # every API route counts
    assert [p.status_code for p in probes] == [200] * 4   # the page and probes do not


async def test_each_client_address_has_its_own_window(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve(rate_limit_per_minute=2)
    async with httpx.AsyncClient() as client:
        statuses = [
            (await client.get(f"{server.url}/v1/models", headers=addr(ip))).status_code
            for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.2")
        ]
    assert statuses == [200, 200, 200, 429, 200, 429]


async def test_with_keys_each_key_has_its_own_window(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve({"PROMPTCAST_API_KEYS": f"{KEY_A},{KEY_B}"}, rate_limit_per_minute=2)
    async with httpx.AsyncClient() as client:
        async def get(key: str, ip: str) -> int:
            response = await client.get(f"{server.url}/v1/models",
                                        headers={**bearer(key), **addr(ip)})
            return response.status_code

        # The key is the client, whatever address it comes from.
        assert [await get(KEY_A, "10.0.0.1"), await get(KEY_A, "10.0.0.2"),
                await get(KEY_A, "10.0.0.3"), await get(KEY_B, "10.0.0.1")] == [
            200, 200, 429, 200]
        # A request without a valid key is refused before it is counted.
        wrong = await client.get(f"{server.url}/v1/models", headers=bearer("nope-nope"))
        assert wrong.status_code == 403


async def test_the_window_closes_after_a_minute() -> None:
    now = [1000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    assert [await limiter.hit("c", 2) for _ in range(2)] == [None, None]
    assert await limiter.hit("c", 2) == 60.0
    now[0] += 59.5
    assert await limiter.hit("c", 2) == pytest.approx(0.5)
    assert await limiter.hit("other", 2) is None
    now[0] += 0.5
    assert await limiter.hit("c", 2) is None     # a new window, opened by this request
    now[0] += 61
    await limiter.hit("c", 2)
    assert list(limiter._windows) == ["c"]       # closed windows are swept


# -- concurrent streams ---------------------------------------------------------

async def test_the_stream_cap_refuses_while_streams_are_open_and_frees_as_they_end(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(max_concurrent_streams=2)
    gates = [upstream.gate(), upstream.gate()]
    upstream.enqueue(*(Script.chat(["open", gate, "closed"]) for gate in gates))
    async with httpx.AsyncClient(timeout=10) as client, contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(
            client.stream("POST", f"{server.url}/optimize-stream", json=PROMPT))
            for _ in gates]
        assert [s.status_code for s in streams] == [200, 200]
        third = await client.post(f"{server.url}/optimize-stream", json=PROMPT)
        assert third.status_code == 429
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["code"] == "too_many_streams"
        chat = await client.post(f"{server.url}/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 429
        # Other address, other slots; and what is not a stream is not capped.
        assert await admitted(server.url, addr("10.0.0.9"), within=0)
        assert (await client.get(f"{server.url}/v1/models")).status_code == 200

        gates[0].set()
        assert [e.data async for e in events_of(streams[0])][-1] == "[DONE]"
        assert await admitted(server.url)
        gates[1].set()


async def test_a_client_disconnect_mid_stream_frees_its_slot(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(max_concurrent_streams=1)
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        seen = 0
        async for _ in events_of(response):
            seen += 1
            if seen == 1:
                assert not await admitted(server.url, within=0)
            if seen == 3:
                break
    assert await upstream.until(lambda: upstream.client_closed == 1, 2.0)
    assert await admitted(server.url, within=2.0)


async def test_a_disconnect_before_the_first_byte_frees_its_slot(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(max_concurrent_streams=1)
    upstream.enqueue(Script(first_delay=60))
    async with httpx.AsyncClient(timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{server.url}/optimize-stream", json=PROMPT)
    assert await upstream.until(lambda: upstream.client_closed == 1, 2.0)
    assert await admitted(server.url, within=2.0)


@pytest.mark.parametrize("script", [
    Script.chat(["a", "b"], then="drop"),          # the upstream dies mid-stream
    Script.error(500, "boom"),                     # an error before the first byte
    Script.chat(["a"], then="hang"),               # the idle timeout ends it
], ids=["upstream-drop", "upstream-error", "timeout"])
async def test_every_end_of_a_stream_frees_its_slot(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble, script: Script
) -> None:
    server = serve(max_concurrent_streams=1, idle_timeout=0.3)
    upstream.enqueue(script)
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status in (200, 502)
    assert await admitted(server.url, within=2.0)


async def _call(app: Any, scope: dict[str, Any]) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    await app({"type": "http", "method": "POST", "path": "/optimize-stream",
               "headers": [], "query_string": b"", "promptcast.client": "ip:1", **scope},
              receive, send)


async def test_an_exception_or_a_cancellation_frees_its_slot() -> None:
    limiter = MemoryLimiter()
    entered = asyncio.Event()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the app broke")

    async def hanging(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await asyncio.sleep(3600)

    def guarded(app: Any) -> RateLimitMiddleware:
        return RateLimitMiddleware(app, backend=limiter, per_minute=0, max_streams=1)

    with pytest.raises(RuntimeError):
        await _call(guarded(failing), {})
    assert limiter._streams == {}
    task = asyncio.ensure_future(_call(guarded(hanging), {}))
    await entered.wait()
    assert limiter._streams == {"ip:1": 1}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter._streams == {}


async def test_the_limits_pass_send_through_untouched() -> None:
    inner = Inner()
    app = RateLimitMiddleware(inner, backend=MemoryLimiter(), per_minute=5, max_streams=5)
    scope = {"type": "http", "method": "POST", "path": "/optimize-stream", "headers": [],
             "query_string": b"", "promptcast.client": "ip:1"}
    await app(scope, asgi_stub.receive, asgi_stub.send)
    assert inner.sends == [asgi_stub.send]


@pytest.mark.parametrize("name", ["RATE_LIMIT_PER_MINUTE", "MAX_CONCURRENT_STREAMS"])
def test_negative_limits_are_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=f"PROMPTCAST_{name} must be 0"):
        Settings.from_env({f"PROMPTCAST_{name}": "-1"})


def test_limits_are_off_by_default() -> None:
    settings = Settings.from_env({})
    assert (settings.rate_limit_per_minute, settings.max_concurrent_streams) == (0, 0)


# -- shared through Redis -------------------------------------------------------

@pytest.mark.redis
async def test_replicas_share_the_request_window(
    replicas: Callable[..., list[Process]], redis_server: RedisServer
) -> None:
    a, b = replicas(2, PROMPTCAST_RATE_LIMIT_PER_MINUTE="3", PROMPTCAST_API_KEYS=KEY_A)
    async with httpx.AsyncClient(headers=bearer(KEY_A)) as client:
        statuses = [(await client.get(f"{p.url}/v1/models")).status_code
                    for p in (a, b, a, b, a)]
        over = await client.get(f"{b.url}/v1/models")
    assert statuses == [200, 200, 200, 429, 429]
    assert over.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() async for k in r.scan_iter("promptcast:rl:*")]
        assert len(keys) == 1 and KEY_A not in keys[0]
        assert 0 < await r.pttl(keys[0]) <= 60_000   # it cannot outlive its window
    finally:
        await r.aclose()


@pytest.mark.redis
async def test_replicas_share_the_stream_cap(
    replicas: Callable[..., list[Process]], upstream: UpstreamDouble,
    redis_server: RedisServer,
) -> None:
    a, b = replicas(2, PROMPTCAST_MAX_CONCURRENT_STREAMS="1")
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["open", gate, "closed"]))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{a.url}/optimize-stream", json=PROMPT
    ) as response:
        assert response.status_code == 200
        assert not await admitted(b.url, within=0)
        assert not await admitted(a.url, within=0)
        r = aioredis.Redis.from_url(redis_server.url)
        try:
            (key,) = [k async for k in r.scan_iter("promptcast:cs:*")]
            assert await r.zcard(key) == 1
            assert 0 < await r.pttl(key) <= 1500   # PROMPTCAST_LEASE_TTL
            await asyncio.sleep(1.6)   # past one lease: renewed, so still held
            assert await r.zcard(key) == 1
            assert not await admitted(b.url, within=0)
        finally:
            await r.aclose()
        gate.set()
        assert [e.data async for e in events_of(response)][-1] == "[DONE]"
    assert await admitted(b.url)


@pytest.mark.redis
async def test_a_dead_replicas_streams_stop_counting_within_the_lease(
    replicas: Callable[..., list[Process]], upstream: UpstreamDouble
) -> None:
    a, b = replicas(2, PROMPTCAST_MAX_CONCURRENT_STREAMS="1")
    upstream.enqueue(Script.chat(["open"], then="hang"))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{a.url}/optimize-stream", json=PROMPT
    ) as response:
        assert response.status_code == 200
        assert not await admitted(b.url, within=0)
        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # The lease is 1.5 s; allow for a loaded machine.
        assert await admitted(b.url, within=6.0)
        assert time.monotonic() - killed > 0.5   # not freed by anything but the lapse


@pytest.mark.redis
async def test_an_unreachable_limits_store_is_a_503(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve({"PROMPTCAST_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                   rate_limit_per_minute=10, max_concurrent_streams=2)
    async with httpx.AsyncClient(timeout=15) as client:
        response = await client.get(f"{server.url}/v1/models")
        health = await client.get(f"{server.url}/healthz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.json()["error"]["message"].startswith(
        "the limits store (Redis) is unreachable: ")
    assert health.status_code == 200


async def test_a_burst_wider_than_the_redis_pool_is_served_not_refused(
    serve: Callable[..., RunningServer], redis_server: RedisServer
) -> None:
    server = serve({"PROMPTCAST_REDIS_URL": redis_server.url},
                   rate_limit_per_minute=100_000)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.get(f"{server.url}/v1/models", headers=addr(f"10.0.{i // 250}.{i % 250}"))
              for i in range(400)))
    refused = [r.json() for r in responses if r.status_code != 200]
    assert refused == []
