"""Group commit of XADDs (`streams/batcher.py`) against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from promptcast.relay.streams.batcher import XaddBatcher
from promptcast.wire.resp import RespPipe

from .conftest import RedisServer

pytestmark = pytest.mark.anyio


class CountingBatcher(XaddBatcher):
    """Counts the pipelines it sends, to see the batching."""

    __slots__ = ("sizes",)

    def __init__(self, redis: aioredis.Redis, pipe: RespPipe | None = None) -> None:
        super().__init__(redis, pipe)
        self.sizes: list[int] = []

    async def _pipeline(self, batch: list[Any]) -> list[Any]:
        self.sizes.append(len(batch))
        return await super()._pipeline(batch)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture(params=["resp", "redis-py"])
def via(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[RespPipe | None]:
    """The batcher's own connection (redis:// and unix://), or redis-py's client (rediss://)."""
    if request.param == "redis-py":
        yield None
        return
    pipe = RespPipe(redis_server.url, connect_timeout=2, reply_timeout=5)
    yield pipe
    pipe.close()


async def test_concurrent_adds_share_pipelines_and_all_land(
    client: aioredis.Redis, via: RespPipe | None
) -> None:
    batcher = CountingBatcher(client, via)
    await batcher.xadd("k0", b"first", "0-1")  # alone: sent at once, by itself
    assert batcher.sizes == [1]
    await asyncio.gather(*(batcher.xadd(f"k{i}", b"x%d" % i, "0-2") for i in range(200)))
    assert sum(batcher.sizes) == 201 and len(batcher.sizes) < 20
    for i in range(200):
        entries = await client.xrange(f"k{i}")
        assert entries[-1] == (b"0-2", {b"f": b"x%d" % i, b"t": b"0"})


async def test_one_refused_add_fails_alone(client: aioredis.Redis, via: RespPipe | None) -> None:
    batcher = XaddBatcher(client, via)
    await batcher.xadd("k", b"a", "0-5")
    results = await asyncio.gather(
        batcher.xadd("k", b"stale", "0-3"),  # an id not above the last: Redis refuses it
        batcher.xadd("other", b"b", "0-1"),
        return_exceptions=True,
    )
    assert isinstance(results[0], ResponseError) and results[1] is None
    with pytest.raises(ResponseError):  # alone, too
        await batcher.xadd("k", b"stale", "0-4")
    assert [e[0] for e in await client.xrange("k")] == [b"0-5"]
    assert await client.xlen("other") == 1


async def test_a_lost_connection_fails_every_waiting_add(
    client: aioredis.Redis, redis_server: RedisServer, via: RespPipe | None
) -> None:
    batcher = XaddBatcher(client, via)
    await batcher.xadd("k", b"a", "0-1")
    redis_server.stop()
    results = await asyncio.wait_for(asyncio.gather(
        *(batcher.xadd("k", b"b", f"0-{n}") for n in range(2, 6)), return_exceptions=True), 20)
    assert all(isinstance(r, RedisConnectionError) for r in results), results


async def test_closing_cancels_adds_still_waiting(client: aioredis.Redis) -> None:
    batcher = XaddBatcher(client)
    adds = [asyncio.create_task(batcher.xadd("k", b"a", f"0-{n}")) for n in range(1, 50)]
    await asyncio.sleep(0)  # queued, the first pipeline on its way
    await asyncio.wait_for(batcher.aclose(), 5)
    await asyncio.wait_for(asyncio.gather(*adds, return_exceptions=True), 5)
    assert all(a.done() for a in adds)
    assert any(a.cancelled() for a in adds)


class Gated(XaddBatcher):
    """Holds its pipelines until `gate` is set; `entered` says one is on its way."""

    __slots__ = ("entered", "gate")

    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def _pipeline(self, batch: list[Any]) -> list[Any]:
        self.entered.set()
        await self.gate.wait()
        return await super()._pipeline(batch)


async def test_an_add_cancelled_while_it_waited_is_not_sent(client: aioredis.Redis) -> None:
    batcher = Gated(client)
    first = asyncio.create_task(batcher.xadd("k", b"a", "0-1"))
    await batcher.entered.wait()  # its pipeline is on its way
    second = asyncio.create_task(batcher.xadd("k", b"b", "0-2"))
    await asyncio.sleep(0)  # queued behind it
    assert len(batcher._queue) == 1
    second.cancel()
    batcher.gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await batcher.xadd("k", b"c", "0-3")  # the next one goes out as usual
    assert [e[0] for e in await client.xrange("k")] == [b"0-1", b"0-3"]


async def test_a_reply_count_that_does_not_match_fails_every_add_and_recovers(
    client: aioredis.Redis,
) -> None:
    class Broken(XaddBatcher):
        __slots__ = ("broken",)

        def __init__(self, redis: aioredis.Redis) -> None:
            super().__init__(redis)
            self.broken = True

        async def _pipeline(self, batch: list[Any]) -> list[Any]:
            results = await super()._pipeline(batch)
            return results[:-1] if self.broken else results

    batcher = Broken(client)
    results = await asyncio.gather(*(batcher.xadd(f"k{i}", b"x", "0-1") for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results
    batcher.broken = False
    await batcher.xadd("k9", b"x", "0-1")


async def test_an_add_can_set_its_streams_expiry_in_the_same_pipeline(
    client: aioredis.Redis, via: RespPipe | None
) -> None:
    batcher = XaddBatcher(client, via)
    await asyncio.gather(batcher.xadd("k", b"a", "0-1", expire_ms=60_000),
                         batcher.xadd("j", b"b", "0-1"))
    assert 0 < await client.pttl("k") <= 60_000
    assert await client.pttl("j") == -1  # no expiry asked for
    with pytest.raises(ResponseError):  # a refused XADD is that add's error, expiry or not
        await batcher.xadd("k", b"c", "0-1", expire_ms=60_000)


async def test_a_refused_add_takes_its_streams_queued_adds_with_it(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    batcher = Gated(client)
    await client.xadd("a", {"f": b"x", "t": 0}, id="0-5")
    stale = asyncio.create_task(batcher.xadd("a", b"stale", "0-3"))  # Redis will refuse it
    await batcher.entered.wait()
    later = asyncio.create_task(batcher.xadd("a", b"later", "0-6"))
    other = asyncio.create_task(batcher.xadd("b", b"other", "0-1"))
    await asyncio.sleep(0)  # both queued behind the refused one
    batcher.gate.set()
    results = await asyncio.gather(stale, later, other, return_exceptions=True)
    assert isinstance(results[0], ResponseError) and isinstance(results[1], ResponseError)
    assert results[2] is None
    # No entry of "a" past the refused one: a reader would have skipped 0-3 unknowing.
    assert [e[0] for e in await client.xrange("a")] == [b"0-5"]


async def test_after_a_refused_add_its_stream_takes_no_more(
    client: aioredis.Redis, via: RespPipe | None
) -> None:
    batcher = XaddBatcher(client, via)
    await client.xadd("a", {"f": b"x", "t": 0}, id="0-5")
    with pytest.raises(ResponseError):
        await batcher.xadd("a", b"stale", "0-3")
    # Sent before its producer heard of the refusal, it would land past the hole.
    with pytest.raises(ResponseError):
        await batcher.xadd("a", b"later", "0-6")
    await batcher.xadd("b", b"other", "0-1")  # other streams go on
    assert [e[0] for e in await client.xrange("a")] == [b"0-5"]
    batcher.forget("a")  # the stream ended: a stream of that name may start again
    await batcher.xadd("a", b"again", "0-7")
