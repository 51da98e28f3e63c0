"""Group commit for the frames every producer of this replica appends to Redis.

Each frame is one `XADD`. Sent one by one, each costs a round trip; under load
that was most of a resumable chunk's CPU. `XaddBatcher` sends the frames that
arrive while a pipeline is in flight as the next pipeline: one write and one
read for all of them. A lone stream's frame goes out at once, so nothing waits
for a batch to fill. The pipelines go over the batcher's own connection
(`resp.py`) where the URL allows, else through redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from promptcast.wire.resp import RespPipe, encode

# stream, frame, entry id, expiry to set on the stream (ms, 0 for none), its outcome
_Entry = tuple[str, bytes, str, int, "asyncio.Future[None]"]


class XaddBatcher:
    """`XADD`s from many coroutines, sent as few pipelines as the round trips allow."""

    __slots__ = ("_broken", "_pipe", "_queue", "_redis", "_task")

    def __init__(self, redis: aioredis.Redis, pipe: RespPipe | None = None) -> None:
        """Send through `pipe` when given (much cheaper), else through redis-py's client."""
        self._redis = redis
        self._pipe = pipe
        # Streams with a frame Redis did not take, and why: their later frames
        # are refused at once, before anyone downstream has heard of it.
        self._broken: dict[str, Exception] = {}
        self._queue: list[_Entry] = []
        self._task: asyncio.Task[None] | None = None

    async def xadd(self, stream: str, frame: bytes, entry_id: str, *, expire_ms: int = 0) -> None:
        """Add `frame` as entry `entry_id` of `stream`; raises what Redis or its connection did.

        `expire_ms` also (re)sets the stream's expiry, in the same pipeline.
        """
        await self.xadd_nowait(stream, frame, entry_id, expire_ms=expire_ms)

    def xadd_nowait(self, stream: str, frame: bytes, entry_id: str, *, expire_ms: int = 0
                    ) -> asyncio.Future[None]:
        """`xadd` without waiting: the future completes, in the order of the calls, when it did."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        broken = self._broken.get(stream)
        if broken is not None:
            done.set_exception(broken)
            return done
        self._queue.append((stream, frame, entry_id, expire_ms, done))
        if self._task is None:
            self._task = loop.create_task(self._send())
        return done

    async def _send(self) -> None:
        batch: list[_Entry] = []
        try:
            while self._queue:
                # An appender cancelled while it waited (its stream is being
                # stopped) takes its frame back: sent anyway, it could land
                # after the terminal frame and be refused.
                batch = [entry for entry in self._queue if not entry[4].done()]
                self._queue = []
                if batch:
                    await self._send_batch(batch)
                batch = []
        except asyncio.CancelledError:
            # The store is closing: nobody may be left waiting.
            for *_, done in (*batch, *self._queue):
                done.cancel()
            self._queue = []
            raise
        finally:
            self._task = None

    async def _send_batch(self, batch: list[_Entry]) -> None:
        """One pipeline; each appender gets its own entry's outcome, or the pipeline's failure."""
        try:
            results: list[Any] = await self._pipeline(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} replies to {len(batch)} XADDs")
        except Exception as exc:
            results = [exc] * len(batch)
        failed: dict[str, Exception] = {}
        for result, (stream, _, _, _, done) in zip(results, batch, strict=True):
            if isinstance(result, Exception):
                failed.setdefault(stream, result)
            if done.done():
                continue  # its appender was cancelled meanwhile
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(None)
        if failed:
            # The same streams' later frames, queued already or to come, must
            # not follow on a fresh connection: a stream with a hole in it
            # would be read. (A pipeline in which Redis refused one entry and
            # took a later one of the same stream has made that hole already;
            # the stream then ends with an error frame.)
            self._broken.update(failed)
            for stream, _, _, _, done in self._queue:
                if stream in failed and not done.done():
                    done.set_exception(failed[stream])

    async def _pipeline(self, batch: list[_Entry]) -> list[Any]:
        """One outcome per entry: its XADD's reply, or the error of its XADD or PEXPIRE."""
        if self._pipe is not None:
            commands: list[bytes] = []
            for stream, frame, entry_id, expire_ms, _ in batch:
                commands.append(encode(b"XADD", stream, entry_id, b"f", frame, b"t", b"0"))
                if expire_ms:
                    commands.append(encode(b"PEXPIRE", stream, expire_ms))
            return _per_entry(batch, await self._pipe.send(commands))
        if len(batch) == 1 and not batch[0][3]:
            # A pipeline of one costs redis-py ~15 % more than the command itself.
            stream, frame, entry_id, _, _ = batch[0]
            try:
                return [await self._redis.xadd(stream, {"f": frame, "t": 0}, id=entry_id)]
            except ResponseError as exc:  # refused: that entry's error, as a pipeline gives it
                return [exc]
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, frame, entry_id, expire_ms, _ in batch:
                pipe.xadd(stream, {"f": frame, "t": 0}, id=entry_id)
                if expire_ms:
                    pipe.pexpire(stream, expire_ms)
            return _per_entry(batch, await pipe.execute(raise_on_error=False))

    def forget(self, stream: str) -> None:
        """The stream has ended: drop what the batcher remembers of it."""
        self._broken.pop(stream, None)

    async def aclose(self) -> None:
        """Stop sending; appends still waiting are cancelled."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._pipe is not None:
            self._pipe.close()


def _per_entry(batch: list[_Entry], replies: list[Any]) -> list[Any]:
    """Fold the replies of entries that also set an expiry into one outcome each."""
    if len(replies) == len(batch):
        return replies
    outcomes, position = [], 0
    for entry in batch:
        group = replies[position:position + (2 if entry[3] else 1)]
        position += len(group)
        errors = [reply for reply in group if isinstance(reply, Exception)]
        outcomes.append(errors[0] if errors else group[0])
    return outcomes
