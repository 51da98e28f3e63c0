"""The streams store: where resumable streams keep their frames, so any reader can replay them.

A stream is a sequence of encoded SSE frames numbered 1..n (its event ids are
`<stream-id>.<n>`), the last one terminal. One producer appends; any number of
readers, on any replica, read after a sequence number and wait for more.

    producer (one replica)                 store                    readers (any replica)
    append(seq, frame) ─────────────────▶ frames 1..n  ◀──────────── read(after, wait)
    renew lease, poll control ──────────▶ lease, cancel, seen_at ◀─ touch() while attached
    finish(seq, terminal) ──────────────▶ kept `stream_ttl` s, then gone (404)

Two implementations: `MemoryStore` (one process, the default) and `RedisStore`
(Redis Streams, shared by replicas).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Batch:
    """What a read returns: frames after the asked sequence number, and the stream's state."""

    frames: list[tuple[int, bytes]]
    finished: bool
    last_seq: int
    producer_alive: bool


@dataclass(frozen=True, slots=True)
class Control:
    """What a producer learns when it renews its lease."""

    cancelled: bool
    idle_for: float


class StreamStore(Protocol):
    """Storage for resumable streams; every method raises `StoreUnavailable` when it cannot work."""

    async def create(self, stream_id: str, idempotency_key: str | None) -> str | None:
        """Register a new stream; returns the existing stream's id if the key is taken."""

    async def discard(self, stream_id: str) -> None:
        """Forget a stream that never started (its upstream failed before the first byte)."""

    async def append(self, stream_id: str, seq: int, frame: bytes, *, terminal: bool) -> None:
        """Add frame `seq`; a terminal frame finishes the stream. Raises `StreamTooLarge`."""

    def append_nowait(self, stream_id: str, seq: int, frame: bytes
                      ) -> asyncio.Future[None] | None:
        """`append` of a non-terminal frame without waiting: None if stored already, else a
        future that completes when it is (in call order). Cap errors are raised at once."""

    async def read(self, stream_id: str, after: int, wait: float) -> Batch | None:
        """Frames after `after`, waiting up to `wait` s for some; None if no such stream."""

    async def touch(self, stream_id: str) -> None:
        """Note that a reader is attached (the producer stops after a grace period without)."""

    async def cancel(self, stream_id: str) -> bool:
        """Ask the producer to stop; False if no such stream."""

    async def renew(self, stream_id: str) -> Control:
        """Keep the producer's lease, and learn whether to stop."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` if the store cannot be reached."""

    async def aclose(self) -> None: ...
