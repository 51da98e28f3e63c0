"""The in-memory tail of a stream this replica produces (`streams/tail.py`)."""

from __future__ import annotations

import asyncio

import pytest

from promptcast.relay.streams.tail import TAIL_FRAMES, Tail

pytestmark = pytest.mark.anyio


def frame(seq: int) -> bytes:
    return f"id: s.{seq}\ndata: {seq}\n\n".encode()


async def test_frames_leave_in_order_once_and_the_end_says_finished() -> None:
    tail = Tail()
    for seq in (1, 2, 3):
        tail.add(seq, frame(seq), terminal=False)
    first = tail.take(0)
    assert first is not None
    assert first.frames == [(1, frame(1)), (2, frame(2)), (3, frame(3))]
    assert (first.finished, first.last_seq, first.producer_alive) == (False, 3, True)
    assert tail.take(3) is None  # nothing new yet
    tail.add(4, frame(4), terminal=True)
    end = tail.take(3)
    assert end is not None and end.frames == [(4, frame(4))] and end.finished
    again = tail.take(4)
    assert again is not None and again.frames == [] and again.finished and again.last_seq == 4


async def test_a_reader_behind_what_was_taken_is_not_covered() -> None:
    tail = Tail()
    tail.add(1, frame(1), terminal=False)
    tail.add(2, frame(2), terminal=False)
    assert tail.take(0) is not None
    assert tail.covers(2) and not tail.covers(1) and not tail.covers(0)


async def test_frames_nobody_takes_are_bounded() -> None:
    tail = Tail()
    n = TAIL_FRAMES + 10
    for seq in range(1, n + 1):
        tail.add(seq, frame(seq), terminal=False)
    assert not tail.covers(0) and tail.covers(10)
    batch = tail.take(10)
    assert batch is not None
    assert [seq for seq, _ in batch.frames] == list(range(11, n + 1))


async def test_wait_returns_when_a_frame_comes_and_wakes_every_reader() -> None:
    tail = Tail()
    readers = [asyncio.create_task(tail.wait(0, 10)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(r.done() for r in readers)
    tail.add(1, frame(1), terminal=False)
    await asyncio.wait_for(asyncio.gather(*readers), 2)


async def test_a_reader_that_gives_up_leaves_the_others_waiting() -> None:
    tail = Tail()
    patient = asyncio.create_task(tail.wait(0, 10))
    await tail.wait(0, 0.01)  # times out
    assert not patient.done()
    tail.add(1, frame(1), terminal=True)
    await asyncio.wait_for(patient, 2)


async def test_wait_returns_at_once_when_there_is_something_to_take() -> None:
    tail = Tail()
    tail.add(1, frame(1), terminal=False)
    await asyncio.wait_for(tail.wait(0, 10), 1)
    await asyncio.wait_for(tail.wait(1, 0), 1)
    tail.add(2, frame(2), terminal=True)
    await asyncio.wait_for(tail.wait(2, 10), 1)  # finished: nothing more will come
