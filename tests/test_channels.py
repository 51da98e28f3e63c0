"""An `Exchange` (`server/channels.py`): a response written straight to the connection."""

from __future__ import annotations

import asyncio

import pytest

from promptcast.server.channels import Exchange


class _Transport:
    """Stands in for the socket's transport under an `Exchange`: keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _Protocol:
    """What an `Exchange` asks of its connection's protocol."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = _Transport()
        self.write_paused = True
        self.default_headers: list[tuple[bytes, bytes]] = []
        self.responses = 0

    def on_response_complete(self) -> None:
        self.responses += 1


@pytest.mark.anyio
async def test_a_response_head_has_its_servers_default_headers_of_the_moment() -> None:
    # Rendered once and kept while the server's list is the same one; uvicorn
    # makes a new list each second (the date), and each server has its own.
    one, other = _Protocol(), _Protocol()
    one.default_headers = [(b"date", b"Thu, 03 Dec 2026 14:00:00 GMT")]
    other.default_headers = [(b"date", b"Thu, 03 Dec 2026 14:00:00 GMT"),
                                          (b"x-other", b"1")]

    def head(protocol: _Protocol) -> bytes:
        exchange = Exchange(protocol, "/x", [], keep_alive=True)  # type: ignore[arg-type]
        exchange.respond(200, [(b"content-type", b"text/plain")], b"")
        return protocol.transport.written[-1]

    assert b"date: Thu, 03 Dec 2026 14:00:00 GMT\r\ncontent-type" in head(one)
    assert b"x-other: 1\r\n" in head(other)
    assert b"x-other" not in head(one)
    one.default_headers = [(b"date", b"Thu, 03 Dec 2026 14:00:01 GMT")]
    assert b"date: Thu, 03 Dec 2026 14:00:01 GMT\r\n" in head(one)


@pytest.mark.anyio
async def test_an_exchange_that_ended_wrongly_is_closed_not_ended() -> None:
    protocol = _Protocol()
    exchange = Exchange(protocol, "/optimize-stream", [], keep_alive=True)  # type: ignore[arg-type]
    exchange.start(200, [(b"content-type", b"text/event-stream")])
    exchange.write(b"data: 1\n\n")
    exchange.abort()
    assert protocol.transport.closed and protocol.responses == 1
    assert not any(w.endswith(b"0\r\n\r\n") for w in protocol.transport.written)
    exchange.end(b"late")  # nothing more once it is over
    await asyncio.sleep(0)  # the turn on which a head not yet written would go
    assert protocol.responses == 1
    assert not any(w.endswith(b"0\r\n\r\n") for w in protocol.transport.written)


@pytest.mark.anyio
async def test_a_stream_head_leaves_with_its_first_events_in_one_write() -> None:
    protocol = _Protocol()
    exchange = Exchange(protocol, "/optimize-stream", [], keep_alive=True)  # type: ignore[arg-type]
    exchange.start(200, [(b"content-type", b"text/event-stream")])
    assert protocol.transport.written == []  # held for the events in hand
    assert exchange.write(b"data: 1\n\n")
    (first,) = protocol.transport.written
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"transfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
    await asyncio.sleep(0)  # the head's own turn comes: nothing left to send
    exchange.end(b"data: [DONE]\n\n")
    assert protocol.transport.written[1:] == [b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"]


@pytest.mark.anyio
async def test_a_stream_head_with_no_events_yet_leaves_on_the_next_loop_turn() -> None:
    protocol = _Protocol()
    exchange = Exchange(protocol, "/optimize-stream", [], keep_alive=True)  # type: ignore[arg-type]
    exchange.start(200, [(b"content-type", b"text/event-stream")])
    await asyncio.sleep(0)
    (head,) = protocol.transport.written
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    exchange.write(b"data: 1\n\n")
    assert protocol.transport.written[1:] == [b"9\r\ndata: 1\n\n\r\n"]
