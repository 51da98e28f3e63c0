"""How every store kept in Redis (streams, limits) connects, and its failures as our own error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from promptcast.errors import StoreUnavailable

T = TypeVar("T")
Store = Literal["streams", "limits"]


async def call(store: Store, op: Callable[[], Awaitable[T]]) -> T:
    """Await `op()`; a Redis or socket failure becomes `StoreUnavailable` naming `store`."""
    try:
        return await op()
    except (RedisError, OSError) as exc:
        raise unavailable(store, exc) from None


def unavailable(store: Store, exc: RedisError | OSError) -> StoreUnavailable:
    """What a Redis or socket failure of `store` is to us (raise it `from None`)."""
    return StoreUnavailable(f"the {store} store (Redis) is unreachable: {type(exc).__name__}")


def client(url: str, *, connections: int, wait: float | None, socket_timeout: float
           ) -> aioredis.Redis:
    """A client with a pool of at most `connections` that waits `wait` s (None: for ever) for one.

    redis-py's own default pool (100) fails at once when every connection is
    busy: under a burst of streams that was a 503 for each one past the 100th.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=wait,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        retry_on_timeout=False,
    )
    return aioredis.Redis.from_pool(pool)  # owns it: aclose() closes the pool
