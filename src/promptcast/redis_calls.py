"""Redis failures as our own error, for every store kept in Redis (streams, limits)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from redis.exceptions import RedisError

from .errors import StoreUnavailable

T = TypeVar("T")
Store = Literal["streams", "limits"]


async def call(store: Store, op: Callable[[], Awaitable[T]]) -> T:
    """Await `op()`; a Redis or socket failure becomes `StoreUnavailable` naming `store`."""
    try:
        return await op()
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(
            f"the {store} store (Redis) is unreachable: {type(exc).__name__}"
        ) from None
