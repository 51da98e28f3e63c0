"""The newest frames of a stream this replica produces, handed to this replica's readers.

A resumable stream's own POST is read on the replica that produces it, and so
are most resumes. Reading those frames back from Redis cost every chunk a
blocking `XREAD` (a connection held per reader, and a round trip); a `Tail`
hands them over in memory instead. It only ever holds frames the store has
already acknowledged, so a reader that falls back to Redis (it asked for
frames the tail no longer has, or the tail is gone) sees the same stream.
"""

from __future__ import annotations

from promptcast.relay.streams import Batch
from promptcast.relay.streams.signal import Signal

# Frames kept for a reader that is not taking them (none attached, or a slow
# client); past this the oldest go, and such a reader catches up from Redis.
TAIL_FRAMES = 64


class Tail:
    """Acknowledged frames not yet taken by a reader; readers wait here for more."""

    __slots__ = ("_frames", "_signal", "finished", "key", "last", "seen", "taken")

    def __init__(self, key: str = "") -> None:
        # What the store would otherwise ask Redis for: the stream's
        # Idempotency-Key, and when a reader here last said it is attached.
        self.key = key
        self.seen = 0.0
        self._frames: list[tuple[int, bytes]] = []
        # Every frame up to `taken` has left the tail: a reader asking for
        # older frames must read them from the store.
        self.taken = 0
        self.last = 0
        self.finished = False
        self._signal = Signal()

    def covers(self, after: int) -> bool:
        """Whether every frame after `after` that exists is (or will be) here."""
        return after >= self.taken

    def add(self, seq: int, frame: bytes, *, terminal: bool) -> None:
        """A frame the store has acknowledged."""
        frames = self._frames
        frames.append((seq, frame))
        self.last = seq
        self.finished = terminal
        if len(frames) > TAIL_FRAMES:
            drop = len(frames) - TAIL_FRAMES
            self.taken = frames[drop - 1][0]
            del frames[:drop]
        self.wake()

    def wake(self) -> None:
        """Wake every reader waiting in `wait()`."""
        self._signal.fire()

    async def wait(self, after: int, seconds: float) -> None:
        """Return when a frame after `after` is here, the stream ended, or `seconds` passed."""
        if self.last > after or self.finished or seconds <= 0:
            return
        await self._signal.wait(seconds)

    def take(self, after: int) -> Batch | None:
        """The frames after `after`, which leave the tail; None if there are none yet."""
        frames = self._frames
        if frames and frames[-1][0] > after:
            batch = [f for f in frames if f[0] > after]
            frames.clear()
            self.taken = batch[-1][0]
            return Batch(batch, self.finished, self.last, producer_alive=True)
        if self.finished:
            return Batch([], True, self.last, producer_alive=True)
        return None
