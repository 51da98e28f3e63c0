"""The in-process streams store: nothing to run, bounded in events, bytes and time."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from promptcast.errors import StoreFull, StreamTooLarge
from promptcast.relay.streams import Batch, Control
from promptcast.relay.streams.signal import Signal


@dataclass(slots=True)
class _Stream:
    key: str | None
    frames: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    finished: bool = False
    cancelled: bool = False
    changed: Signal = field(default_factory=Signal)
    seen_at: float = 0.0


class MemoryStore:
    """Streams in a dict; finished ones are dropped `ttl` seconds after their last frame."""

    def __init__(
        self,
        *,
        ttl: float,
        max_events: int,
        max_stream_bytes: int,
        max_total_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_events = max_events
        self._max_stream_bytes = max_stream_bytes
        self._max_total_bytes = max_total_bytes
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._keys: dict[str, str] = {}
        self._expiries: deque[tuple[float, str]] = deque()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._streams)

    def _sweep(self) -> None:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, stream_id = self._expiries.popleft()
            self._drop(stream_id)

    def _drop(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self.total_bytes -= stream.nbytes
            if stream.key is not None and self._keys.get(stream.key) == stream_id:
                del self._keys[stream.key]

    async def create(self, stream_id: str, idempotency_key: str | None) -> str | None:
        self._sweep()
        if idempotency_key is not None and idempotency_key in self._keys:
            return self._keys[idempotency_key]
        if self.total_bytes >= self._max_total_bytes:
            raise StoreFull(
                f"the streams store holds {self.total_bytes} bytes, its limit; "
                "try again when older streams expire"
            )
        self._streams[stream_id] = _Stream(idempotency_key, seen_at=self._clock())
        if idempotency_key is not None:
            self._keys[idempotency_key] = stream_id
        return None

    async def discard(self, stream_id: str) -> None:
        self._drop(stream_id)

    async def append(self, stream_id: str, seq: int, frame: bytes, *, terminal: bool) -> None:
        self._append(stream_id, seq, frame, terminal=terminal)

    def append_nowait(self, stream_id: str, seq: int, frame: bytes) -> None:
        """Stored at once: nothing to wait for."""
        self._append(stream_id, seq, frame, terminal=False)

    def _append(self, stream_id: str, seq: int, frame: bytes, *, terminal: bool) -> None:
        stream = self._streams[stream_id]
        if not terminal:
            # Terminal frames are always taken, so a stream over a cap can still end.
            if seq > self._max_events:
                raise StreamTooLarge(f"the stream reached its limit of {self._max_events} events")
            if stream.nbytes + len(frame) > self._max_stream_bytes:
                raise StreamTooLarge(
                    f"the stream reached its limit of {self._max_stream_bytes} bytes"
                )
            if self.total_bytes + len(frame) > self._max_total_bytes:
                raise StoreFull(f"the streams store reached its {self._max_total_bytes}-byte limit")
        stream.frames.append(frame)
        stream.nbytes += len(frame)
        self.total_bytes += len(frame)
        if terminal:
            stream.finished = True
            self._expiries.append((self._clock() + self._ttl, stream_id))
        stream.changed.fire()

    async def read(self, stream_id: str, after: int, wait: float) -> Batch | None:
        self._sweep()
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        if len(stream.frames) <= after and not stream.finished and wait > 0:
            await stream.changed.wait(wait)
        frames = [(i + 1, f) for i, f in enumerate(stream.frames[after:], start=after)]
        return Batch(frames, stream.finished, len(stream.frames), producer_alive=True)

    async def touch(self, stream_id: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.seen_at = self._clock()

    async def cancel(self, stream_id: str) -> bool:
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        stream.cancelled = True
        return True

    async def renew(self, stream_id: str) -> Control:
        stream = self._streams[stream_id]
        return Control(stream.cancelled, self._clock() - stream.seen_at)

    async def ping(self) -> None:
        """Always reachable: it lives in this process."""

    async def aclose(self) -> None:
        self._streams.clear()
        self._keys.clear()
