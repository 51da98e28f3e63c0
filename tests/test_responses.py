"""The event-stream response's sink (`responses.py`): where a follower's frames go."""

from __future__ import annotations

from typing import Any

import pytest

from promptcast.server.responses import ClientSink

pytestmark = pytest.mark.anyio


class Channel:
    """Stands in for the connection's `DirectChannel`: records writes, can pause or be gone."""

    def __init__(self) -> None:
        self.paused = False
        self.gone = False
        self.written: list[bytes] = []

    def write(self, frame: bytes) -> bool:
        if self.gone:
            return False
        self.written.append(frame)
        return True


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


async def test_writes_go_straight_to_the_connection_while_it_takes_them() -> None:
    channel, send = Channel(), Sent()
    sink = ClientSink(send, channel)  # type: ignore[arg-type]
    await sink.write(b"data: 1\n\n")
    assert channel.written == [b"data: 1\n\n"] and send.messages == []


async def test_a_paused_client_is_written_through_send_which_waits_for_it() -> None:
    channel, send = Channel(), Sent()
    channel.paused = True
    sink = ClientSink(send, channel)  # type: ignore[arg-type]
    await sink.write(b"data: 1\n\n")
    assert channel.written == []
    assert send.messages == [{"type": "http.response.body", "body": b"data: 1\n\n",
                              "more_body": True}]


async def test_a_gone_client_raises_oserror() -> None:
    channel = Channel()
    channel.gone = True
    sink = ClientSink(Sent(), channel)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        await sink.write(b"data: 1\n\n")


async def test_without_a_channel_every_write_goes_through_send() -> None:
    send = Sent()
    await ClientSink(send).write(b"data: 1\n\n")
    assert [m["body"] for m in send.messages] == [b"data: 1\n\n"]
