"""The batcher's own Redis connection (`streams/resp.py`), against real redis-servers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from promptcast.wire.resp import RespPipe, encode, supports

from .conftest import RedisServer, free_port

pytestmark = pytest.mark.anyio


def xadd(key: str, seq: int, value: bytes = b"v") -> bytes:
    return encode(b"XADD", key, f"0-{seq}", b"f", value, b"t", b"0")


def pipe(url: str, reply_timeout: float = 5.0) -> RespPipe:
    return RespPipe(url, connect_timeout=2, reply_timeout=reply_timeout)


async def send_once(url: str, *commands: bytes) -> list[object]:
    """Open a connection to `url`, send one pipeline, close it."""
    conn = pipe(url)
    try:
        return await conn.send(list(commands))
    finally:
        conn.close()


async def entries(url: str, key: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return [entry_id for entry_id, _ in await client.xrange(key)]
    finally:
        await client.aclose()


@pytest.fixture
def redis_with(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """redis-servers started with extra options by the test; all killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(5)


def start_redis(started: list[subprocess.Popen[bytes]], workdir: Path, *options: str,
                ready: Path | int) -> None:
    """Start redis-server with `options`; return once `ready` (a socket path or port) accepts."""
    proc = subprocess.Popen(["redis-server", "--save", "", "--appendonly", "no", "--dir",
                             str(workdir), "--bind", "127.0.0.1", *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(proc)
    for _ in range(250):
        try:
            if isinstance(ready, Path):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(ready))
            else:
                socket.create_connection(("127.0.0.1", ready), timeout=0.5).close()
            return
        except OSError:
            assert proc.poll() is None, "redis-server exited at start"
            threading.Event().wait(0.02)
    raise RuntimeError("redis-server did not start")


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(b"XADD", "k", 7, b"") == b"*4\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n7\r\n$0\r\n\r\n"
    assert supports("redis://h:1/0") and supports("unix:///run/redis.sock")
    assert not supports("rediss://h:1/0")


async def test_replies_come_back_in_order_with_errors_in_their_place(
    redis_server: RedisServer,
) -> None:
    conn = pipe(redis_server.url)
    try:
        assert await conn.send([xadd("k", 2)]) == [b"0-2"]
        replies = await conn.send([xadd("k", 3), xadd("k", 1), xadd("j", 1)])
        assert replies[0] == b"0-3" and replies[2] == b"0-1"
        assert isinstance(replies[1], ResponseError)  # an id below the last: refused alone
    finally:
        conn.close()
    assert await entries(redis_server.url, "k") == [b"0-2", b"0-3"]


def test_it_works_on_uvloop_as_promptcast_serves(redis_server: RedisServer) -> None:
    async def main() -> list[object]:
        conn = pipe(redis_server.url)
        try:
            return await conn.send([xadd("u", 1), xadd("u", 2)])
        finally:
            conn.close()

    assert uvloop.run(main()) == [b"0-1", b"0-2"]


async def test_a_password_and_a_database_from_the_url(
    redis_with: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    start_redis(redis_with, tmp_path, "--port", str(port), "--requirepass", "s3cret",
                ready=port)
    url = f"redis://:s3cret@127.0.0.1:{port}/3"
    assert await send_once(url, xadd("k", 1)) == [b"0-1"]
    assert await entries(url, "k") == [b"0-1"]
    assert await entries(f"redis://:s3cret@127.0.0.1:{port}/0", "k") == []
    wrong = pipe(f"redis://:nope@127.0.0.1:{port}/0")
    with pytest.raises(RedisConnectionError, match="refused"):
        await wrong.send([xadd("k", 2)])


async def test_a_unix_socket(redis_with: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    start_redis(redis_with, tmp_path, "--port", "0", "--unixsocket", str(path), ready=path)
    url = f"unix://{path}?db=1"
    assert await send_once(url, xadd("k", 1)) == [b"0-1"]
    assert await entries(url, "k") == [b"0-1"]


async def test_a_lost_redis_fails_the_pipeline_and_the_next_one_reconnects(
    redis_server: RedisServer,
) -> None:
    conn = pipe(redis_server.url)
    try:
        assert await conn.send([xadd("k", 1)]) == [b"0-1"]
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await conn.send([xadd("k", 2)])
        redis_server.start()
        assert await conn.send([xadd("k", 3)]) == [b"0-3"]
    finally:
        conn.close()


async def test_a_cancelled_pipeline_leaves_no_reply_to_the_next_one(
    redis_server: RedisServer,
) -> None:
    conn = pipe(redis_server.url)
    try:
        assert await conn.send([encode(b"PING")]) == [b"PONG"]  # connected
        waiting = asyncio.create_task(conn.send([encode(b"BLPOP", b"nothing", b"5")]))
        await asyncio.sleep(0)  # one step: written, now waiting for its reply
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Neither BLPOP's late nil nor a wait behind it.
        assert await asyncio.wait_for(conn.send([encode(b"PING")]), 4) == [b"PONG"]
    finally:
        conn.close()


async def test_a_redis_that_does_not_answer_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        conn = pipe(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", reply_timeout=0.2)
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(conn.send([encode(b"PING")]), 5)
        conn.close()
