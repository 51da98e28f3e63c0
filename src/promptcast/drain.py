"""Graceful shutdown: streams in flight get `drain_timeout` seconds to finish, then a frame."""

from __future__ import annotations

import asyncio

from .errors import StreamStopped


class Drain:
    """Set off once by SIGTERM; every open stream waits on `expired()` beside its client."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started = asyncio.Event()
        self._deadline: float | None = None

    @property
    def over(self) -> bool:
        """True once the drain time has run out."""
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    def start(self) -> None:
        """Begin draining (idempotent); call on the event loop's thread."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.timeout
            self._started.set()

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
