"""Redis failures become StoreUnavailable, naming the store; other errors pass through."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from promptcast.errors import StoreUnavailable
from promptcast.wire import redis_calls

from .conftest import RedisServer, free_port

pytestmark = pytest.mark.anyio


async def test_an_unreachable_redis_is_store_unavailable_naming_the_store() -> None:
    # No retries: the driver's default backs off for seconds before giving up.
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=2,
                            retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await redis_calls.call("streams", client.ping)
    finally:
        await client.aclose()
    assert str(caught.value).startswith("the streams store (Redis) is unreachable: ")
    # No driver internals in what users see, nor in the traceback.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_socket_error_is_store_unavailable() -> None:
    async def op() -> None:
        raise ConnectionResetError

    with pytest.raises(StoreUnavailable) as caught:
        await redis_calls.call("limits", op)
    assert str(caught.value) == "the limits store (Redis) is unreachable: ConnectionResetError"


async def test_other_errors_and_results_pass_through() -> None:
    async def bug() -> None:
        raise KeyError("not a Redis failure")

    async def answer() -> int:
        return 42

    with pytest.raises(KeyError):
        await redis_calls.call("streams", bug)
    assert await redis_calls.call("streams", answer) == 42


async def test_a_busy_pool_makes_a_command_wait_for_a_connection_then_gives_up(
    redis_server: RedisServer,
) -> None:
    patient = redis_calls.client(redis_server.url, connections=1, wait=10, socket_timeout=5)
    hasty = redis_calls.client(redis_server.url, connections=1, wait=0.05, socket_timeout=5)
    try:
        for client in (patient, hasty):
            holder = asyncio.create_task(client.blpop(["nothing"], timeout=1))
            await asyncio.sleep(0)  # it takes the one connection
            if client is patient:
                assert await client.ping()  # waited for the connection, did not fail
            else:
                with pytest.raises(StoreUnavailable):
                    await redis_calls.call("streams", client.ping)
            await holder
    finally:
        await patient.aclose()
        await hasty.aclose()
