"""Where a relay's frames go: the one interface of a client's connection and of a streams store.

A relay writes from its upstream's read callbacks, so writing never waits: a
sink takes the frames at once and says with `paused` when its reader is
behind (the relay then stops reading its upstream until `on_writable`). A
reader that leaves, or a sink that fails, is told through `on_stop`. The
end, `close()`, is the one awaited step: the frames the last read held back,
then the terminal frame.

    server/sinks.py      a client's connection: written directly, or through ASGI `send`
    relay/resumable.py   a streams store: one entry per event, numbered
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from promptcast.errors import PromptcastError

# The relay's terminal frame and its number, made once the sink has taken
# every frame before it (a store's failure there changes what it must say).
Conclude = Callable[[], tuple[bytes, int] | None]
Stopped = Callable[[PromptcastError | None], None]


class Sink(Protocol):
    """A relay's output (see the module's docstring)."""

    @property
    def paused(self) -> bool:
        """The reader is behind: stop producing until `on_writable`."""

    @property
    def gone(self) -> bool:
        """The reader left: nothing more can be written."""

    @property
    def per_event(self) -> bool:
        """Whether each frame must come apart, one event each (a store numbers its entries);
        else a read's frames may come joined."""

    @property
    def stall(self) -> str:
        """What a timeout says when it strikes while this sink is paused."""

    def write(self, frames: list[bytes], first_seq: int) -> bool:
        """Take the frames of one upstream read (numbered from `first_seq` when `per_event`);
        False if the reader is gone. The list is the caller's: do not keep it."""

    def heartbeat(self) -> bool:
        """Write a keep-alive comment; False if the reader is gone."""

    def on_stop(self, callback: Stopped | None) -> None:
        """Call `callback` once: with None when the reader leaves, with an error when the
        sink failed and the stream must end with it. None unsubscribes."""

    def on_writable(self, callback: Callable[[], object] | None) -> None:
        """Call `callback` when a paused sink can take frames again; None unsubscribes."""

    async def close(self, frames: list[bytes], first_seq: int, conclude: Conclude) -> bool:
        """Deliver `frames` (held back by the last read), then `conclude()`'s terminal frame,
        and end; True if a terminal frame reached the reader."""


async def writable(sink: Sink) -> None:
    """Return once `sink` takes writes; raise OSError if its reader is gone (for task writers)."""
    while sink.paused and not sink.gone:
        waiter = asyncio.get_running_loop().create_future()

        def wake(waiter: asyncio.Future[None] = waiter) -> None:
            if not waiter.done():
                waiter.set_result(None)

        sink.on_writable(wake)
        try:
            await waiter
        finally:
            sink.on_writable(None)
    if sink.gone:
        raise OSError("the client is gone")
