"""The readers' wake-up (`streams/signal.py`)."""

from __future__ import annotations

import asyncio

import pytest

from promptcast.relay.streams.signal import Signal

pytestmark = pytest.mark.anyio


async def test_fire_wakes_every_waiter_and_only_those() -> None:
    signal = Signal()
    waiters = [asyncio.create_task(signal.wait(10)) for _ in range(3)]
    await asyncio.sleep(0)
    signal.fire()
    await asyncio.wait_for(asyncio.gather(*waiters), 2)
    later = asyncio.create_task(signal.wait(10))
    await asyncio.sleep(0)
    assert not later.done()  # an earlier fire does not count
    signal.fire()
    await asyncio.wait_for(later, 2)


async def test_a_waiter_gives_up_after_its_limit_alone() -> None:
    signal = Signal()
    patient = asyncio.create_task(signal.wait(10))
    await asyncio.sleep(0)
    await asyncio.wait_for(signal.wait(0.01), 2)
    assert not patient.done()
    assert len(signal._waiters) == 1  # only the patient one is left
    signal.fire()
    await asyncio.wait_for(patient, 2)
    assert not signal._waiters


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait(10))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not signal._waiters
    signal.fire()  # nothing to wake, nothing raised
