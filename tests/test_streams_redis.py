"""The Redis streams store (`streams/redis.py`) against a real redis-server.

What a replica's own readers get comes from memory; what another replica's
readers get comes from Redis; both must be the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from promptcast.errors import StoreUnavailable, StreamTooLarge
from promptcast.relay.streams import Batch
from promptcast.relay.streams.redis import RedisStore

from .conftest import RedisServer

pytestmark = pytest.mark.anyio

Factory = Callable[..., RedisStore]


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[Factory]:
    """RedisStores on the test's redis-server, each one a replica; all closed at the end."""
    made: list[RedisStore] = []

    def make(**overrides: Any) -> RedisStore:
        options: dict[str, Any] = {"ttl": 60.0, "max_events": 10_000,
                                   "max_stream_bytes": 1 << 20, "lease_ttl": 5.0,
                                   "running_ttl": 120.0, **overrides}
        store = RedisStore(redis_server.url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


@contextlib.asynccontextmanager
async def direct(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the test's redis-server, to look at what the store wrote."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def xreads(redis_server: RedisServer) -> int:
    """How many XREADs the real server has run (its own count, INFO commandstats)."""
    async with direct(redis_server) as client:
        stats: dict[str, Any] = await client.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


def frame(seq: int) -> bytes:
    return f"id: s.{seq}\ndata: {{\"n\":{seq}}}\n\n".encode()


async def produce(store: RedisStore, stream_id: str, n: int, *, end: bool = True) -> None:
    for seq in range(1, n + 1):
        await store.append(stream_id, seq, frame(seq), terminal=False)
    if end:
        await store.append(stream_id, n + 1, b"data: [DONE]\n\n", terminal=True)


async def read_all(store: RedisStore, stream_id: str, after: int = 0) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    while True:
        batch = await store.read(stream_id, after, 1.0)
        assert batch is not None
        got += batch.frames
        if batch.frames:
            after = batch.frames[-1][0]
        if batch.finished and after >= batch.last_seq:
            return got


WHOLE = [*((seq, frame(seq)) for seq in range(1, 21)), (21, b"data: [DONE]\n\n")]


async def test_the_producing_replica_reads_its_stream_from_memory(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores()
    assert await store.create("s1", None) is None
    reader = asyncio.create_task(read_all(store, "s1"))
    await produce(store, "s1", 20)
    assert await asyncio.wait_for(reader, 10) == WHOLE
    assert await xreads(redis_server) == 0


async def test_another_replica_reads_the_same_stream_from_redis(
    stores: Factory, redis_server: RedisServer
) -> None:
    producer, other = stores(), stores()
    await producer.create("s1", None)
    local = asyncio.create_task(read_all(producer, "s1"))
    remote = asyncio.create_task(read_all(other, "s1"))
    await produce(producer, "s1", 20)
    assert await asyncio.wait_for(local, 10) == WHOLE
    assert await asyncio.wait_for(remote, 10) == WHOLE
    assert await xreads(redis_server) > 0


async def test_a_second_reader_from_the_start_gets_what_the_first_took(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores()
    await store.create("s1", None)
    await produce(store, "s1", 20, end=False)
    first = await store.read("s1", 0, 0)
    assert first is not None and [s for s, _ in first.frames] == list(range(1, 21))
    # Taken from memory by the first reader: the second is served by Redis.
    second = await store.read("s1", 0, 0)
    assert second == Batch(first.frames, False, 20, producer_alive=True)
    await store.append("s1", 21, b"data: [DONE]\n\n", terminal=True)
    assert await read_all(store, "s1", 20) == WHOLE[20:]
    assert await read_all(store, "s1") == WHOLE


async def test_a_waiting_reader_learns_the_producer_is_gone(stores: Factory) -> None:
    # The producer's lease lapses (its replica died) without a terminal frame.
    store = stores(lease_ttl=0.3)
    await store.create("s1", None)
    await produce(store, "s1", 3, end=False)
    first = await store.read("s1", 0, 0)
    assert first is not None and len(first.frames) == 3

    async def until_lost() -> Batch:
        while True:
            batch = await store.read("s1", 3, 0.2)
            assert batch is not None and not batch.frames
            if not batch.producer_alive:
                return batch

    lost = await asyncio.wait_for(until_lost(), 10)
    assert not lost.finished and lost.last_seq == 3


async def test_a_failed_append_wakes_the_waiting_reader_with_the_error(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores()
    await store.create("s1", None)
    await produce(store, "s1", 2, end=False)
    assert await store.read("s1", 0, 0) is not None
    reader = asyncio.create_task(store.read("s1", 2, 30))
    await asyncio.sleep(0.05)
    assert not reader.done()
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.append("s1", 3, frame(3), terminal=False)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(reader, 10)  # not the 30 s it was willing to wait


async def test_many_streams_appending_at_once_each_stay_whole_and_in_order(
    stores: Factory,
) -> None:
    producer, other = stores(), stores()
    ids = [f"s{i}" for i in range(150)]
    for stream_id in ids:
        await producer.create(stream_id, None)
    await asyncio.gather(*(produce(producer, stream_id, 20) for stream_id in ids))
    for stream_id in ids:
        assert await read_all(other, stream_id) == WHOLE


async def blocked_clients(redis_server: RedisServer) -> int:
    async with direct(redis_server) as client:
        info: dict[str, Any] = await client.info("clients")
    return int(info["blocked_clients"])


async def blocked_readers(producer: RedisStore, replica: RedisStore, redis_server: RedisServer,
                          n: int) -> list[asyncio.Task[Batch | None]]:
    """`n` readers on `replica`, each blocked in Redis on an idle stream of `producer`."""
    idle = [f"idle{i}" for i in range(n)]
    for stream_id in idle:
        await producer.create(stream_id, None)
    readers = [asyncio.create_task(replica.read(stream_id, 0, 30)) for stream_id in idle]
    for _ in range(500):  # Redis's own count: nothing to wait on but polling it
        if await blocked_clients(redis_server) == n:
            break
        await asyncio.sleep(0.01)
    assert await blocked_clients(redis_server) == n
    return readers


async def test_readers_waiting_on_other_replicas_streams_never_hold_up_this_ones_writes(
    stores: Factory, redis_server: RedisServer
) -> None:
    producer, replica = stores(), stores()
    # More than the command pool's 32 connections.
    readers = await blocked_readers(producer, replica, redis_server, 40)
    await replica.create("mine", None)
    await asyncio.wait_for(produce(replica, "mine", 20), 10)
    assert not any(reader.done() for reader in readers)  # still waiting, yet the writes went
    assert await read_all(producer, "mine") == WHOLE
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


async def command_calls(redis_server: RedisServer, command: str) -> int:
    async with direct(redis_server) as client:
        stats: dict[str, Any] = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_reader_here_is_noted_in_memory_and_its_producer_sees_it(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores()
    await store.create("s1", None)
    before = await command_calls(redis_server, "hset")
    await store.touch("s1")
    assert await command_calls(redis_server, "hset") == before  # no round trip
    control = await store.renew("s1")
    assert 0 <= control.idle_for < 1 and not control.cancelled


async def test_a_reader_elsewhere_is_noted_in_redis_and_the_producer_sees_it(
    stores: Factory, redis_server: RedisServer
) -> None:
    producer, other = stores(), stores()
    await producer.create("s1", None)
    async with direct(redis_server) as client:
        await client.hset("promptcast:m:s1", "seen", 1.0)  # long ago
        assert (await producer.renew("s1")).idle_for > 1000
        await other.touch("s1")
        assert (await producer.renew("s1")).idle_for < 1


async def test_the_end_of_a_keyed_stream_expires_its_key_without_asking_redis_for_it(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores(ttl=60.0)
    await store.create("s1", "key-1")
    await produce(store, "s1", 3)
    assert await command_calls(redis_server, "hget") == 0
    async with direct(redis_server) as client:
        assert await client.get("promptcast:i:key-1") == b"s1"
        assert 0 < await client.pttl("promptcast:i:key-1") <= 60_000


async def test_last_seq_is_the_last_entry_even_after_a_gap(stores: Factory) -> None:
    # A frame whose appender was cancelled while its stream was stopped is
    # never written; the terminal frame after it is the stream's last.
    producer, other = stores(), stores()
    await producer.create("s1", None)
    await produce(producer, "s1", 2, end=False)
    await producer.append("s1", 4, b"data: [DONE]\n\n", terminal=True)
    batch = await other.read("s1", 4, 0)
    assert batch == Batch([], True, 4, producer_alive=True)


async def test_a_wait_under_a_millisecond_does_not_block_for_ever(stores: Factory) -> None:
    producer, other = stores(), stores()
    await producer.create("s1", None)
    await produce(producer, "s1", 2, end=False)
    batch = await asyncio.wait_for(other.read("s1", 2, 0.0004), 3)
    assert batch is not None and batch.frames == [] and batch.producer_alive


async def test_a_reader_finding_every_waiting_connection_busy_polls_instead_of_failing(
    stores: Factory, redis_server: RedisServer
) -> None:
    producer, replica = stores(), stores()
    hogs = await blocked_readers(producer, replica, redis_server, 64)  # the blocking pool's size
    await producer.create("late", None)
    await produce(producer, "late", 2, end=False)
    batch = await asyncio.wait_for(replica.read("late", 0, 0.1), 10)
    assert batch is not None and [s for s, _ in batch.frames] == [1, 2]
    assert not any(hog.done() for hog in hogs)
    for hog in hogs:
        hog.cancel()
    await asyncio.gather(*hogs, return_exceptions=True)


async def test_frames_taken_without_waiting_land_in_order_and_the_first_sets_an_expiry(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores(running_ttl=120.0)
    await store.create("s1", None)
    pending = [store.append_nowait("s1", seq, frame(seq)) for seq in range(1, 21)]
    await asyncio.gather(*pending)
    await store.append("s1", 21, b"data: [DONE]\n\n", terminal=True)
    assert await read_all(store, "s1") == WHOLE  # from the tail
    assert await read_all(stores(), "s1") == WHOLE  # from Redis
    async with direct(redis_server) as client:
        assert await client.pttl("promptcast:s:s1") > 0


async def test_a_frame_taken_without_waiting_fails_as_store_unavailable(
    stores: Factory, redis_server: RedisServer
) -> None:
    store = stores(max_events=3)
    await store.create("s1", None)
    await store.append_nowait("s1", 1, frame(1))
    with pytest.raises(StreamTooLarge):  # past a cap: at once, not through the future
        store.append_nowait("s1", 4, frame(4))
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.append_nowait("s1", 2, frame(2))
