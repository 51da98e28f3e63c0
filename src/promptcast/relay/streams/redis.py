"""The shared streams store: Redis Streams, so any replica can replay and tail any stream.

Keys (prefix `promptcast:`), all expiring:
    s:<id>   a Redis Stream; entry `0-<seq>` holds `f` = the encoded frame, `t` = 1 if terminal
    m:<id>   a hash: `state` running|done, `cancel`, `seen` (last reader, epoch s)
    l:<id>   the producer's lease, renewed every second; gone = producer lost
    i:<key>  Idempotency-Key -> stream id
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from redis.exceptions import RedisError
from redis.typing import KeyT, StreamIdT

from promptcast.errors import StreamTooLarge
from promptcast.relay.streams import Batch, Control
from promptcast.relay.streams.batcher import XaddBatcher
from promptcast.relay.streams.tail import Tail
from promptcast.wire import redis_calls, resp
from promptcast.wire.resp import RespPipe

T = TypeVar("T")
_PREFIX = "promptcast:"
_READ_COUNT = 1000
# Commands never hold a connection for long (this replica's own readers wait
# in memory), so a small pool serves thousands of streams; a burst waits for
# a connection. Readers of other replicas' streams hold one for each blocking
# XREAD: they have their own pool, so they never keep this replica's writes
# waiting, and a reader that finds it full for as long as it meant to wait
# reads without blocking instead (it is then polling, not failing).
_POOL_SIZE = 32
_WAITING_POOL_SIZE = 64
_POOL_WAIT = 5.0
# How much longer than its wait a blocking read may take, its connection included.
_BLOCK_MARGIN = 1.0
# Longer than the longest XREAD BLOCK, short enough that a dead Redis is
# noticed within a few seconds rather than never.
_SOCKET_TIMEOUT = 5.0
# How long a finished stream's tail waits for its reader to take the end.
_TAIL_LINGER = 30.0


class RedisStore:
    """Resumable streams in Redis; every failure to reach it is a `StoreUnavailable`."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        max_events: int,
        max_stream_bytes: int,
        lease_ttl: float,
        running_ttl: float,
    ) -> None:
        self._redis = redis_calls.client(url, connections=_POOL_SIZE, wait=_POOL_WAIT,
                                         socket_timeout=_SOCKET_TIMEOUT)
        # Blocking XREADs only; each bounds its own wait for a connection.
        self._waiting = redis_calls.client(url, connections=_WAITING_POOL_SIZE, wait=None,
                                           socket_timeout=_SOCKET_TIMEOUT)
        pipe = (RespPipe(url, connect_timeout=2, reply_timeout=_SOCKET_TIMEOUT)
                if resp.supports(url) else None)
        self._xadds = XaddBatcher(self._redis, pipe)
        self._ttl_ms = int(ttl * 1000)
        self._running_ttl_ms = int(running_ttl * 1000)
        self._max_events = max_events
        self._max_stream_bytes = max_stream_bytes
        self._lease_ms = int(lease_ttl * 1000)
        self._bytes: dict[str, int] = {}
        # The streams this replica produces, for its own readers.
        self._tails: dict[str, Tail] = {}

    @staticmethod
    def _k(kind: str, name: str) -> str:
        return f"{_PREFIX}{kind}:{name}"

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        return await redis_calls.call("streams", op)

    async def create(self, stream_id: str, idempotency_key: str | None) -> str | None:
        async def op() -> str | None:
            if idempotency_key is not None:
                key = self._k("i", idempotency_key)
                if not await self._redis.set(key, stream_id, nx=True, px=self._running_ttl_ms):
                    existing = _text(await self._redis.get(key))
                    if existing and await self._redis.exists(self._k("m", existing)):
                        return existing
                    await self._redis.set(key, stream_id, px=self._running_ttl_ms)
            meta = self._k("m", stream_id)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(meta, mapping={"state": "running", "seen": time.time(),
                                         "key": idempotency_key or ""})
                pipe.pexpire(meta, self._running_ttl_ms)
                pipe.set(self._k("l", stream_id), 1, px=self._lease_ms)
                await pipe.execute()
            self._bytes[stream_id] = 0
            self._tails[stream_id] = Tail(idempotency_key or "")
            return None

        return await self._call(op)

    async def discard(self, stream_id: str) -> None:
        tail = self._tails.get(stream_id)

        async def op() -> None:
            key = tail.key if tail is not None else _text(
                await self._redis.hget(self._k("m", stream_id), "key"))
            keys = [self._k(k, stream_id) for k in "sml"]
            if key:
                keys.append(self._k("i", key))
            await self._redis.delete(*keys)

        self._bytes.pop(stream_id, None)
        self._xadds.forget(self._k("s", stream_id))
        self._drop_tail(stream_id)
        await self._call(op)

    async def append(self, stream_id: str, seq: int, frame: bytes, *, terminal: bool) -> None:
        try:
            if terminal:
                try:
                    await self._call(lambda: self._finish(stream_id, seq, frame))
                finally:
                    # Its last word, stored or not: nothing more comes for it.
                    self._bytes.pop(stream_id, None)
                    self._xadds.forget(self._k("s", stream_id))
            else:
                self._count(stream_id, seq, frame)
                await self._call(lambda: self._xadd(stream_id, seq, frame))
        except BaseException:
            # Whatever the store holds now, this replica's readers find it there.
            self._drop_tail(stream_id)
            raise
        tail = self._tails.get(stream_id)
        if tail is not None:
            tail.add(seq, frame, terminal=terminal)
            if terminal:
                asyncio.get_running_loop().call_later(_TAIL_LINGER, self._forget, stream_id, tail)

    def append_nowait(self, stream_id: str, seq: int, frame: bytes) -> asyncio.Future[None]:
        try:
            self._count(stream_id, seq, frame)
        except BaseException:
            self._drop_tail(stream_id)
            raise
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent = self._xadds.xadd_nowait(self._k("s", stream_id), frame, f"0-{seq}",
                                       expire_ms=self._running_ttl_ms if seq == 1 else 0)
        sent.add_done_callback(partial(self._appended, stream_id, seq, frame, done))
        return done

    def _appended(self, stream_id: str, seq: int, frame: bytes, done: asyncio.Future[None],
                  sent: asyncio.Future[None]) -> None:
        # Runs in the order the frames were sent, so the tail stays in order.
        exc = None if sent.cancelled() else sent.exception()
        if sent.cancelled() or exc is not None:
            self._drop_tail(stream_id)
            if done.done():
                return
            if exc is None:
                done.cancel()
            elif isinstance(exc, (RedisError, OSError)):
                done.set_exception(redis_calls.unavailable("streams", exc))
            else:
                done.set_exception(exc)
            return
        tail = self._tails.get(stream_id)
        if tail is not None:
            tail.add(seq, frame, terminal=False)
        if not done.done():
            done.set_result(None)

    def _count(self, stream_id: str, seq: int, frame: bytes) -> None:
        """Hold a stream to its caps; raises `StreamTooLarge` past them."""
        if seq > self._max_events:
            raise StreamTooLarge(f"the stream reached its limit of {self._max_events} events")
        size = self._bytes.get(stream_id, 0) + len(frame)
        if size > self._max_stream_bytes:
            raise StreamTooLarge(f"the stream reached its limit of {self._max_stream_bytes} bytes")
        self._bytes[stream_id] = size

    async def _xadd(self, stream_id: str, seq: int, frame: bytes) -> None:
        # Sent with other streams' frames; the first also gives the stream its expiry.
        await self._xadds.xadd(self._k("s", stream_id), frame, f"0-{seq}",
                               expire_ms=self._running_ttl_ms if seq == 1 else 0)

    async def _finish(self, stream_id: str, seq: int, frame: bytes) -> None:
        stream, meta = self._k("s", stream_id), self._k("m", stream_id)
        tail = self._tails.get(stream_id)
        key = tail.key if tail is not None else _text(await self._redis.hget(meta, "key"))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, {"f": frame, "t": 1}, id=f"0-{seq}")
            pipe.hset(meta, "state", "done")
            pipe.delete(self._k("l", stream_id))
            for name in (stream, meta, *([self._k("i", key)] if key else [])):
                pipe.pexpire(name, self._ttl_ms)
            await pipe.execute()

    async def read(self, stream_id: str, after: int, wait: float) -> Batch | None:
        tail = self._tails.get(stream_id)
        if tail is not None and tail.covers(after):
            await tail.wait(after, wait)
            if self._tails.get(stream_id) is tail and tail.covers(after):
                batch = tail.take(after)
                if batch is not None:
                    if batch.finished:  # the end is taken: nothing left to hand over
                        self._forget(stream_id, tail)
                    return batch
            # Nothing came for `wait`: ask the store, which also knows whether
            # the producer is still alive.
            wait = 0
        stream = self._k("s", stream_id)
        streams: dict[KeyT, StreamIdT] = {stream: f"0-{after}"}

        async def op() -> Batch | None:
            # The hot path is this one XREAD: entries carry their own terminal
            # flag, so the stream's state is only looked up when nothing came.
            found: Any = None
            if wait > 0:
                try:
                    # Bounded by the read's own wait, the time spent waiting
                    # for a connection included; then it reads without blocking.
                    async with asyncio.timeout(wait + _BLOCK_MARGIN):
                        # At least 1 ms: BLOCK 0 would wait for ever.
                        found = await self._waiting.xread(
                            streams, count=_READ_COUNT, block=max(1, math.ceil(wait * 1000)))
                except TimeoutError:
                    found = await self._redis.xread(streams, count=_READ_COUNT)
            else:
                found = await self._redis.xread(streams, count=_READ_COUNT)
            entries = found[0][1] if found else []
            if entries:
                frames = [(_seq(entry_id), fields[b"f"]) for entry_id, fields in entries]
                finished = entries[-1][1].get(b"t") == b"1"
                return Batch(frames, finished, frames[-1][0], producer_alive=True)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(self._k("m", stream_id), "state")
                pipe.exists(self._k("l", stream_id))
                # The last entry's number, not the count: a frame whose
                # appender was cancelled mid-stop leaves a gap.
                pipe.xrevrange(stream, count=1)
                state, lease, last = await pipe.execute()
            if state is None:
                return None
            finished = state == b"done"
            last_seq = _seq(last[0][0]) if last else 0
            return Batch([], finished, last_seq, producer_alive=finished or bool(lease))

        return await self._call(op)

    async def touch(self, stream_id: str) -> None:
        tail = self._tails.get(stream_id)
        if tail is not None:
            # Its producer is here and reads this at its next renew: no round trip.
            tail.seen = time.time()
            return
        await self._call(lambda: self._redis.hset(self._k("m", stream_id), "seen", time.time()))

    async def cancel(self, stream_id: str) -> bool:
        meta = self._k("m", stream_id)

        async def op() -> bool:
            if not await self._redis.exists(meta):
                return False
            await self._redis.hset(meta, "cancel", 1)
            return True

        return await self._call(op)

    async def renew(self, stream_id: str) -> Control:
        # Cross-replica cancels are polled here; a cancel on the producer's own
        # replica wakes it directly (see resumable.Producer.cancel).
        async def op() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._k("l", stream_id), 1, px=self._lease_ms)
                pipe.hmget(self._k("m", stream_id), ["cancel", "seen"])
                pipe.pexpire(self._k("m", stream_id), self._running_ttl_ms)
                pipe.pexpire(self._k("s", stream_id), self._running_ttl_ms)
                result: list[Any] = await pipe.execute()
                return result

        _, (cancel, seen), _, _ = await self._call(op)
        tail = self._tails.get(stream_id)
        last_seen = max(float(seen or 0), tail.seen if tail is not None else 0.0)
        idle = time.time() - last_seen if last_seen else 0.0
        return Control(cancelled=bool(cancel), idle_for=idle)

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def aclose(self) -> None:
        for stream_id in list(self._tails):
            self._drop_tail(stream_id)
        await self._xadds.aclose()
        await self._waiting.aclose()
        await self._redis.aclose()

    def _forget(self, stream_id: str, tail: Tail) -> None:
        if self._tails.get(stream_id) is tail:
            del self._tails[stream_id]

    def _drop_tail(self, stream_id: str) -> None:
        tail = self._tails.pop(stream_id, None)
        if tail is not None:
            tail.wake()  # its readers go to the store from now on


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[1])
