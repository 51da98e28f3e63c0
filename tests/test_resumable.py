"""Resumable streams on one server, with the memory store and with a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from promptcast.errors import StreamTooLarge
from promptcast.relay.resumable import Position, follow
from promptcast.relay.streams.memory import MemoryStore
from promptcast.wire.sse import Event

from .conftest import RedisServer, RunningServer
from .sse_client import Received, events_of, get_stream, post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event, wait_until

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "You are a helpful support bot.", "resumable": True}
PIECES = [f"w{i} " for i in range(30)]


@pytest.fixture(params=["memory", "redis"])
def resumable_server(request: pytest.FixtureRequest,
                     serve: Callable[..., RunningServer]) -> Callable[..., RunningServer]:
    """Start promptcast with the memory store, or with a real redis-server."""
    env: dict[str, str] = {}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        env["PROMPTCAST_REDIS_URL"] = redis.url

    def _serve(**overrides: Any) -> RunningServer:
        return serve(env, **overrides)

    return _serve


async def read_some(url: str, body: dict[str, Any], k: int,
                    headers: dict[str, str] | None = None) -> tuple[str, list[Event]]:
    """POST, read `k` events, then drop the connection."""
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", url, json=body, headers=headers or {}
    ) as response:
        assert response.status_code == 200, await response.aread()
        stream_id = response.headers["x-stream-id"]
        got: list[Event] = []
        async for event in events_of(response):
            got.append(event)
            if len(got) == k:
                break
    return stream_id, got


def content_of(events: list[Event]) -> str:
    return Received(200, httpx.Headers(), events=events).content


async def test_a_dropped_stream_resumes_with_no_gap_and_no_duplicate(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    upstream.enqueue(Script.chat(PIECES, gap=0.01), Script.chat(PIECES))
    whole = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"})

    stream_id, first = await read_some(f"{server.url}/optimize-stream", PROMPT, 7)
    rest = await get_stream(f"{server.url}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": first[-1].id})
    assert rest.status == 200 and rest.headers["x-stream-id"] == stream_id
    events = first + rest.events
    ids = [e.id for e in events]
    assert ids == [f"{stream_id}.{n}" for n in range(1, len(events) + 1)]
    assert content_of(events) == whole.content == "".join(PIECES)
    assert events[-1].data == "[DONE]"
    assert [e.data for e in events] == whole.data


async def test_resume_from_the_start_and_with_a_query_parameter(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    upstream.enqueue(Script.chat(PIECES))
    stream_id, first = await read_some(f"{server.url}/optimize-stream", PROMPT, 3)
    from_start = await get_stream(f"{server.url}/optimize-stream/{stream_id}")
    by_query = await get_stream(
        f"{server.url}/optimize-stream/{stream_id}?last_event_id={stream_id}.3")
    assert from_start.data[:3] == [e.data for e in first]
    assert from_start.data[3:] == by_query.data
    assert content_of(from_start.events) == "".join(PIECES)


async def test_after_the_terminal_frame_a_reconnect_gets_204(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    upstream.enqueue(Script.chat(["a", "b"]))
    whole = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert whole.terminal.data == "[DONE]"
    stream_id = whole.headers["x-stream-id"]
    done = await get_stream(f"{server.url}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": whole.terminal.id})
    assert done.status == 204 and done.raw == b""
    again = await get_stream(f"{server.url}/optimize-stream/{stream_id}",
                             {"Last-Event-ID": whole.events[-2].id})
    assert again.status == 200 and again.data == ["[DONE]"]


async def test_bad_resumes_are_refused(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server(stream_ttl=2)
    one = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    two = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    one_id, two_id = one.headers["x-stream-id"], two.headers["x-stream-id"]

    foreign = await get_stream(f"{server.url}/optimize-stream/{one_id}",
                               {"Last-Event-ID": f"{two_id}.2"})
    assert foreign.status == 422
    assert foreign.body["error"] == {"code": "invalid_request", "field": "Last-Event-ID",
                                     "message": "Last-Event-ID belongs to another stream"}
    garbled = await get_stream(f"{server.url}/optimize-stream/{one_id}",
                               {"Last-Event-ID": "nonsense"})
    assert garbled.status == 422
    ahead = await get_stream(f"{server.url}/optimize-stream/{one_id}",
                             {"Last-Event-ID": f"{one_id}.999"})
    assert ahead.status == 422 and "past the stream's last event" in ahead.body["error"]["message"]
    unknown = await get_stream(f"{server.url}/optimize-stream/AAAAAAAAAAAA")
    assert unknown.status == 404 and unknown.body["error"]["code"] == "not_found"

    def expired() -> bool:
        return httpx.get(f"{server.url}/optimize-stream/{one_id}").status_code == 404

    assert wait_until(expired, 8.0)


async def test_a_stream_without_the_flag_is_not_kept(server: RunningServer) -> None:
    got = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"})
    missing = await get_stream(f"{server.url}/optimize-stream/{got.headers['x-stream-id']}")
    assert missing.status == 404


async def test_generation_goes_on_without_the_client(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["before", gate, "after"]))
    stream_id, _ = await read_some(f"{server.url}/optimize-stream", PROMPT, 1)
    gate.set()
    # The client left; the upstream still runs to its end.
    assert await upstream.until(lambda: upstream.completed == 1, 5.0)
    assert upstream.client_closed == 0
    rest = await get_stream(f"{server.url}/optimize-stream/{stream_id}")
    assert content_of(rest.events) == "beforeafter"


async def test_nobody_reading_cancels_the_upstream_after_the_grace_period(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server(resume_grace=1.0)
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    stream_id, _ = await read_some(f"{server.url}/optimize-stream", PROMPT, 2)
    assert await upstream.until(lambda: upstream.client_closed == 1, 5.0)
    rest = await get_stream(f"{server.url}/optimize-stream/{stream_id}")
    assert rest.terminal.event == "error"
    assert rest.error()["code"] == "abandoned"


async def test_a_reader_keeps_the_stream_alive_past_the_grace_period(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server(resume_grace=0.5)
    upstream.enqueue(Script.chat(["tok"] * 80, gap=0.025))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.data == "[DONE]" and got.content == "tok" * 80


async def test_delete_stops_the_upstream_at_once(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        stream_id = response.headers["x-stream-id"]
        events: list[Event] = []
        async for event in events_of(response):
            events.append(event)
            if len(events) == 3:
                deleted = await client.delete(f"{server.url}/optimize-stream/{stream_id}")
                assert deleted.status_code == 202
                assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["code"] == "cancelled"
    async with httpx.AsyncClient() as client:
        missing = await client.delete(f"{server.url}/optimize-stream/AAAAAAAAAAAA")
    assert missing.status_code == 404


async def test_same_idempotency_key_joins_the_running_stream(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["one", gate, "two"]))
    headers = {"Idempotency-Key": "order-123-rewrite"}
    stream_id, _ = await read_some(f"{server.url}/optimize-stream", PROMPT, 1, headers)
    second_post = post_stream(f"{server.url}/optimize-stream", PROMPT, headers=headers)
    gate.set()
    second = await second_post
    assert second.headers["x-stream-id"] == stream_id
    assert second.content == "onetwo"
    assert len([r for r in upstream.requests if r.path.endswith("/chat/completions")]) == 1


async def test_a_stream_over_its_event_cap_ends_with_a_clear_error(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server(stream_max_events=5)
    upstream.enqueue(Script.chat(["x"] * 20))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.event == "error"
    assert got.error() == {"code": "stream_too_large",
                           "message": "the stream reached its limit of 5 events"}
    assert len(got.events) == 6 and await upstream.until(lambda: upstream.open_connections == 0, 1)


async def test_memory_store_total_cap_refuses_new_streams(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(store_max_bytes=600)
    first = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert first.terminal.event == "error" and first.error()["code"] == "store_full"
    refused = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert refused.status == 503 and refused.body["error"]["code"] == "store_full"


async def test_upstream_refusal_is_an_http_error_and_keeps_nothing(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = resumable_server()
    upstream.enqueue(Script.error(401, "bad key"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 502 and got.body["error"]["code"] == "upstream_unauthorized"


async def test_redis_down_at_start_is_a_503(
    serve: Callable[..., RunningServer], redis_server: RedisServer
) -> None:
    server = serve({"PROMPTCAST_REDIS_URL": redis_server.url})
    redis_server.stop()
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 503 and got.body["error"]["code"] == "store_unavailable"
    assert got.body["error"]["message"].startswith("the streams store (Redis) is unreachable: ")
    plain = await post_stream(f"{server.url}/optimize-stream", {"prompt": "still works"})
    assert plain.status == 200 and plain.terminal.data == "[DONE]"


async def test_many_concurrent_resumable_streams_all_complete(
    resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    """More streams at once than a Redis connection pool has connections: none may fail."""
    server = resumable_server()
    n = 150
    pieces = [f"t{i} " for i in range(8)]
    upstream.enqueue(*(Script.chat(pieces, gap=0.03) for _ in range(n)))
    got = await asyncio.gather(*(post_stream(f"{server.url}/optimize-stream", PROMPT)
                                 for _ in range(n)))
    errors = [r.raw[:300] for r in got if r.status != 200 or r.events[-1].event != "message"]
    assert errors == []
    assert all(r.content == "".join(pieces) and r.events[-1].data == "[DONE]" for r in got)


async def test_follow_writes_frames_that_came_together_in_one_write() -> None:
    store = MemoryStore(ttl=60, max_events=100, max_stream_bytes=1 << 20,
                        max_total_bytes=1 << 24)
    await store.create("s", None)
    frames = [b"id: s.%d\ndata: %d\n\n" % (n, n) for n in range(1, 4)]
    for seq, frame in enumerate(frames, 1):
        await store.append("s", seq, frame, terminal=False)
    await store.append("s", 4, b"id: s.4\ndata: [DONE]\n\n", terminal=True)
    writes: list[bytes] = []

    async def write(data: bytes) -> None:
        writes.append(data)

    assert await follow(store, Position("s", 0), write, first=None, heartbeat_interval=15)
    assert writes == [b"".join(frames) + b"id: s.4\ndata: [DONE]\n\n"]


async def test_a_memory_store_takes_a_frame_at_once() -> None:
    store = MemoryStore(ttl=60, max_events=2, max_stream_bytes=1 << 20,
                        max_total_bytes=1 << 24)
    await store.create("s", None)
    assert store.append_nowait("s", 1, b"data: 1\n\n") is None
    batch = await store.read("s", 0, 0)
    assert batch is not None and batch.frames == [(1, b"data: 1\n\n")]
    store.append_nowait("s", 2, b"data: 2\n\n")
    with pytest.raises(StreamTooLarge):
        store.append_nowait("s", 3, b"data: 3\n\n")


def _burst_in_one_read(n: int = 5) -> Script:
    """A role chunk, `n` content events in ONE upstream write (one read: one run), the end."""
    return Script.raw(event(chunk_json("", role="assistant")),
                      b"".join(event(chunk_json(f"<{i}>")) for i in range(n)),
                      event(chunk_json(finish="stop")), b"data: [DONE]\n\n")


async def test_a_resume_inside_a_read_of_many_events_gets_the_rest_once(
        resumable_server: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    # The store keeps an event an entry even when many came in one read.
    server = resumable_server()
    upstream.enqueue(_burst_in_one_read(5))
    whole = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "scripted"})
    assert whole.status == 200 and whole.terminal.data == "[DONE]"
    stream_id = whole.headers["x-stream-id"]
    ids = [e.id for e in whole.events]
    assert ids == [f"{stream_id}.{n}" for n in range(1, len(ids) + 1)]
    rest = await get_stream(f"{server.url}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": f"{stream_id}.3"})
    assert rest.status == 200, (rest.status, rest.body)
    assert [e.id for e in rest.events] == ids[3:]
    # The last id seen: nothing left, the stream is over.
    done = await get_stream(f"{server.url}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": whole.terminal.id})
    assert done.status == 204, (done.status, done.body)
