"""Per-client limits: requests per minute and concurrent streams, in memory or in Redis.

A *client* is an API key (by a digest of it, never the key itself) or, without
keys, the client's address. Two limits, each off at 0:

- requests per minute: a fixed window that opens at a client's first request
  and lasts 60 s; the N+1th request inside it gets 429 with `Retry-After` = the
  seconds until the window closes. (A burst of 2N is possible across the edge
  of two windows; in exchange a window costs one counter, O(1) in memory and
  one round trip in Redis.)
- concurrent streams: a stream holds a slot from its request until its response
  completes (end, error, timeout, client disconnect or exception alike); one
  more gets 429 with `Retry-After: 1`.

Redis scheme (prefix `promptcast:`), so replicas share the limits:

    rl:<client>   the window's counter: `SET 0 PX 60000 NX` + `INCR` + `PTTL` in
                  one MULTI, so the counter never exists without its expiry
    cs:<client>   a sorted set of stream leases: member = `<replica>:<n>`,
                  score = when the lease lapses (Redis server time, ms)

A lease is taken by a script that first drops lapsed members, then counts.
The replica holding leases renews them every `lease_ttl / 3` (one pipeline
for all of them, not per chunk) and removes each when its stream ends. If a
replica dies, its leases stop being renewed and stop counting within
`lease_ttl`; the set itself expires when nobody renews anything in it. So a
slot can leak for at most `lease_ttl` seconds, never forever. Redis time is
used for scores so that replicas' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptcast.errors import PromptcastError, RateLimited, StoreUnavailable, TooManyStreams
from promptcast.ops.logs import request_id_var
from promptcast.wire import redis_calls

WINDOW = 60.0
STREAM_RETRY_AFTER = 1
_PREFIX = "promptcast:"
T = TypeVar("T")

# The scope key where the authentication middleware leaves the client's identity.
CLIENT_SCOPE_KEY = "promptcast.client"


class LimiterBackend(Protocol):
    """Where the counters live: this process (`MemoryLimiter`) or Redis (`RedisLimiter`)."""

    async def hit(self, client: str, limit: int) -> float | None:
        """Count one request in `client`'s window: None if within `limit`, else the
        seconds until the window closes."""
        ...

    async def acquire(self, client: str, limit: int) -> str | None:
        """Take one of `client`'s `limit` stream slots: a lease to release, or None if full."""
        ...

    async def release(self, client: str, lease: str) -> None:
        """Give a slot back; never raises (an unreleased Redis lease lapses by itself)."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Limits for one process: a dict of windows and a dict of stream counts."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}   # client -> (count, closes at)
        self._streams: dict[str, int] = {}
        self._next_sweep = clock() + window
        self._leases = itertools.count(1)

    async def hit(self, client: str, limit: int) -> float | None:
        now = self._clock()
        if now >= self._next_sweep:
            # Drop closed windows, so memory follows the clients of the last minute.
            self._windows = {c: w for c, w in self._windows.items() if w[1] > now}
            self._next_sweep = now + self._window
        count, closes = self._windows.get(client, (0, 0.0))
        if closes <= now:
            count, closes = 0, now + self._window
        if count >= limit:
            return closes - now
        self._windows[client] = (count + 1, closes)
        return None

    async def acquire(self, client: str, limit: int) -> str | None:
        held = self._streams.get(client, 0)
        if held >= limit:
            return None
        self._streams[client] = held + 1
        return str(next(self._leases))

    async def release(self, client: str, lease: str) -> None:
        held = self._streams.get(client, 0) - 1
        if held > 0:
            self._streams[client] = held
        else:
            self._streams.pop(client, None)

    async def aclose(self) -> None:
        return None


# Drop lapsed leases, count, and add ours if there is room. KEYS[1] = the set;
# ARGV = member, limit, lease ms. Server time, so replicas' clocks do not matter.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Push one held lease's lapse time forward (ZADD XX: a released lease stays gone).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisLimiter:
    """Limits shared by every replica on one Redis; any failure to reach it is a 503."""

    def __init__(self, url: str, *, lease_ttl: float, window: float = WINDOW) -> None:
        # Every command is one short round trip, but a connection is held until
        # its request's task runs again: on a saturated core a burst waits a
        # while for one (the streams store waits as long).
        self._redis = redis_calls.client(url, connections=64, wait=5.0, socket_timeout=2)
        self._window_ms = int(window * 1000)
        self._lease_ms = max(int(lease_ttl * 1000), 1000)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._replica = secrets.token_hex(6)
        self._numbers = itertools.count(1)
        self._held: dict[str, str] = {}             # lease -> its set's key
        self._renewer: asyncio.Task[None] | None = None

    @staticmethod
    def _k(kind: str, client: str) -> str:
        return f"{_PREFIX}{kind}:{client}"

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        return await redis_calls.call("limits", op)

    async def hit(self, client: str, limit: int) -> float | None:
        key = self._k("rl", client)

        async def op() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, px=self._window_ms, nx=True)
                pipe.incr(key)
                pipe.pttl(key)
                return await pipe.execute()

        _, count, pttl = await self._call(op)
        if int(count) <= limit:
            return None
        return (int(pttl) if int(pttl) > 0 else self._window_ms) / 1000

    async def acquire(self, client: str, limit: int) -> str | None:
        key = self._k("cs", client)
        lease = f"{self._replica}:{next(self._numbers)}"

        async def op() -> Any:
            return await self._acquire(keys=[key], args=[lease, limit, self._lease_ms])

        if not int(await self._call(op)):
            return None
        self._held[lease] = key
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_held(), name="promptcast-limit-leases"
            )
        return lease

    async def release(self, client: str, lease: str) -> None:
        # Forgotten first, so that even if Redis cannot be told, the lease lapses.
        key = self._held.pop(lease, None)
        if key is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(key, lease)

    async def _renew_held(self) -> None:
        interval = self._lease_ms / 3000
        while self._held:
            await asyncio.sleep(interval)
            held = list(self._held.items())
            if not held:
                break
            # A failed renewal is retried on the next tick; leases lapse only
            # if Redis stays unreachable for a whole lease_ttl.
            with contextlib.suppress(RedisError, OSError):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for lease, key in held:
                        await self._renew(keys=[key], args=[lease, self._lease_ms], client=pipe)
                    await pipe.execute()

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        self._held.clear()
        await self._redis.aclose()


def _streams_route(method: str, path: str) -> bool:
    """Requests that open a stream (or a one-shot completion): what the stream cap counts."""
    if method == "POST":
        return path in ("/optimize-stream", "/prod-api/optimize-stream",
                        "/prompt/optimize-prompt", "/v1/chat/completions", "/eval")
    if method in ("GET", "HEAD"):
        for prefix in ("/optimize-stream/", "/prod-api/optimize-stream/"):
            if path.startswith(prefix) and "/" not in path[len(prefix):]:
                return True
    return False


async def send_error(exc: PromptcastError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with our JSON error body, from a middleware, before the app sees the request."""
    headers = dict(exc.headers)
    request_id = request_id_var.get()
    if request_id:
        headers["X-Request-ID"] = request_id
    response = JSONResponse(exc.body(), status_code=exc.http_status, headers=headers)
    await response(scope, receive, send)


class RateLimitMiddleware:
    """Plain ASGI: checks and counts from the scope alone, and passes `send` through untouched.

    Placed inside the API-key middleware, which decides which paths it sees
    (`scope["promptcast.client"]` set) and who the client is.
    """

    def __init__(self, app: ASGIApp, *, backend: LimiterBackend, per_minute: int,
                 max_streams: int) -> None:
        self.app = app
        self.backend = backend
        self.per_minute = per_minute
        self.max_streams = max_streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        client = scope.get(CLIENT_SCOPE_KEY)
        if scope["type"] != "http" or client is None:
            await self.app(scope, receive, send)
            return
        try:
            if self.per_minute:
                wait = await self.backend.hit(client, self.per_minute)
                if wait is not None:
                    seconds = max(1, math.ceil(wait))
                    raise RateLimited(
                        f"more than {self.per_minute} requests in a minute; "
                        f"retry in {seconds} s",
                        headers={"Retry-After": str(seconds)},
                    )
            lease = None
            if self.max_streams and _streams_route(scope["method"], scope["path"]):
                lease = await self.backend.acquire(client, self.max_streams)
                if lease is None:
                    raise TooManyStreams(
                        f"{self.max_streams} streams are already open for this client; "
                        "wait for one to end",
                        headers={"Retry-After": str(STREAM_RETRY_AFTER)},
                    )
        except (RateLimited, TooManyStreams, StoreUnavailable) as exc:
            await send_error(exc, scope, receive, send)
            return
        if lease is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            # Shielded: a cancelled request (server shutdown) still gives its slot back.
            await asyncio.shield(self.backend.release(client, lease))

    def _closing(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.backend.aclose()
            await send(message)

        return wrapped
