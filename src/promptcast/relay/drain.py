"""Graceful shutdown: streams in flight get `drain_timeout` seconds to finish, then a frame."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from promptcast.errors import StreamStopped


class Drain:
    """Set off once by SIGTERM; every open stream waits on `expired()` beside its client."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started = asyncio.Event()
        self._deadline: float | None = None
        self._expired = False
        self._subscribers: set[Callable[[], None]] = set()

    @property
    def over(self) -> bool:
        """True once the drain time has run out."""
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    def start(self) -> None:
        """Begin draining (idempotent); call on the event loop's thread."""
        if self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + self.timeout
            self._started.set()
            loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._expired = True
        subscribers, self._subscribers = self._subscribers, set()
        for callback in subscribers:
            callback()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once the drain time is up; returns the function that unsubscribes.

        The callback form of `expired()`, for streams that keep no task of their own.
        """
        if self._expired:
            asyncio.get_running_loop().call_soon(callback)
            return _nothing
        self._subscribers.add(callback)
        return lambda: self._subscribers.discard(callback)

    async def expired(self) -> StreamStopped:
        """Return once shutdown began and the drain time has passed."""
        await self._started.wait()
        assert self._deadline is not None
        await asyncio.sleep(self._deadline - asyncio.get_running_loop().time())
        return self.error()

    @staticmethod
    def error() -> StreamStopped:
        return StreamStopped("the server is shutting down; retry on another replica",
                             code="shutting_down")


def _nothing() -> None:
    pass
