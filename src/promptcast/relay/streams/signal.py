"""A wake-up for the readers of a stream: `fire()` wakes every coroutine in `wait()`.

A reader waits once per chunk it relays. `asyncio.Event` with `asyncio.timeout`
costs a `Timeout` (and its task bookkeeping) and an `Event` a wait; this costs
one future and one timer, which is what waiting with a limit needs.
"""

from __future__ import annotations

import asyncio


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Signal:
    """Readers wait for the next `fire()`, or until their own limit passes."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        """Wake everyone waiting now; later waiters wait for the next fire."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Return at the next `fire()`, or after `seconds`, whichever is first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)  # it timed out, or this reader was cancelled
