"""Closing a test server's connection so that nothing of it outlives its event loop."""

from __future__ import annotations

import asyncio


async def close_fully(writer: asyncio.StreamWriter) -> None:
    """Close `writer`'s connection and wait until it is closed (5 s at most, then abort).

    A transport left closing when its loop ends is found later by the garbage
    collector, as a ResourceWarning that fails whichever test runs then.
    """
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (TimeoutError, OSError):
        writer.transport.abort()
