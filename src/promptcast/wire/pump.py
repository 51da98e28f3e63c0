"""Push mode for sources that can only be iterated: a task reads them and hands each event on.

The relay takes every stream pushed (`sse.EventListener`), from the callbacks
of the upstream's reads. A source that has no reads of its own to call back
from (the embedded model's worker thread, an evaluation run) is iterated by
one task instead, which calls the listener for each event, then `flush()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from promptcast.errors import PromptcastError, UpstreamError
from promptcast.wire.sse import Event, EventListener, is_terminal

log = logging.getLogger("promptcast.pump")


class Pump:
    """Iterates `events` in a task once pushing starts; `aclose()` stops it and calls `close`."""

    __slots__ = ("_close", "_events", "_open", "_task")

    def __init__(self, events: AsyncIterator[Event],
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self._events = events
        self._close = close
        self._open = asyncio.Event()
        self._open.set()
        self._task: asyncio.Task[None] | None = None

    def push(self, listener: EventListener) -> None:
        """Start handing every event to `listener`, each followed by `flush()`."""
        if self._task is not None:
            raise RuntimeError("this stream is pushing already")
        self._task = asyncio.get_running_loop().create_task(self._pump(listener))

    def pause(self) -> None:
        """Stop taking events from the source until `resume()`."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def aclose(self) -> None:
        """Stop iterating, and close the source (its generators' `finally` run now, in order)."""
        task, self._task = self._task, None
        try:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # the caller itself is being cancelled, not only the pump
        finally:
            # Paused, the task waited outside the source, which a cancel does not close;
            # and the source is closed even when the caller is being cancelled.
            close_iterator = getattr(self._events, "aclose", None)
            if close_iterator is not None:
                await close_iterator()
            if self._close is not None:
                await self._close()

    async def _pump(self, listener: EventListener) -> None:
        try:
            async for event in self._events:
                if not self._open.is_set():
                    await self._open.wait()
                listener.event(event)
                listener.flush()
                if is_terminal(event):
                    return  # nothing comes after the end; the stream is closed next
        except PromptcastError as exc:
            listener.end(exc)
        except OSError as exc:
            # The source's own connection failed, not the reader's: say so.
            listener.end(UpstreamError(
                f"the upstream connection failed: {type(exc).__name__}", code="upstream_closed"))
        except Exception as exc:
            log.exception("a stream's source failed")
            listener.end(UpstreamError(f"internal error: {type(exc).__name__}",
                                       code="internal_error"))
        else:
            listener.end(None)
