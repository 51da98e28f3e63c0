"""The embedded model (SmolLM2-135M run by llama.cpp) behind a real server on a loopback port.

These run the real model: short generations (`local_max_tokens`) keep them fast.
The server runs in this process (uvicorn in a thread), so the generation thread
("promptcast-llama") and the provider's `generations_running` are observable
from here: that is the upstream side of a disconnect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, aclosing
from typing import Any

import httpx
import pytest

from promptcast.providers.llama import LlamaProvider
from promptcast.settings import Settings
from promptcast.wire.sse import Event

from .conftest import RunningServer, start_server
from .sse_client import events_of, post_stream
from .upstream_double import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.llama]

PROMPT = {
    "prompt": "You are a customer-service assistant for an online shop. Answer questions "
              "about orders, refunds and delivery.",
    "type": "expand",
    "model": "local",
}


@pytest.fixture
def serve_local() -> Iterator[Callable[..., RunningServer]]:
    """promptcast with only the built-in table (no keys: `local` is the default)."""
    servers: list[RunningServer] = []

    def _serve(**overrides: Any) -> RunningServer:
        server = start_server(Settings.from_env({}, **overrides))
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


# Greedy decoding makes this one long and repeatable: it counts until max_tokens
# (minutes at this model's speed), so a generation still running is our doing.
LONG_CHAT = {
    "model": "local", "stream": True, "temperature": 0, "max_tokens": 2000,
    "messages": [{"role": "user",
                  "content": "List the numbers from 1 to 1000 separated by commas."}],
}


def llama_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "promptcast-llama" and t.is_alive()]


def local_provider(server: RunningServer) -> LlamaProvider:
    """The provider instance serving `local` in the running app."""
    runtime = server._server.lifespan.state["runtime"]
    provider = runtime.service.providers.get(server.settings.models.get("local"))
    assert isinstance(provider, LlamaProvider)
    return provider


def chunk(data: str) -> dict[str, Any]:
    return dict(json.loads(data))


def content_of(data: str) -> str:
    choices = chunk(data).get("choices") or []
    return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""


async def tokens(events: AsyncIterator[Event], wanted: int) -> int:
    """Read events until `wanted` content tokens have arrived (or the stream ended)."""
    seen = 0
    async for ev in events:
        if ev.data != "[DONE]" and content_of(ev.data):
            seen += 1
            if seen == wanted:
                break
    return seen


async def test_tokens_stream_one_event_each_and_end_with_done(
    serve_local: Callable[..., RunningServer],
) -> None:
    server = serve_local(local_max_tokens=48)
    arrived: list[float] = []
    raw = bytearray()
    events = []
    async with httpx.AsyncClient(timeout=60) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        stream_id = response.headers["x-stream-id"]
        async for ev in events_of(response, raw):
            events.append(ev)
            arrived.append(time.monotonic())

    assert events[-1].data == "[DONE]" and raw.endswith(b"data: [DONE]\n\n")
    chunks = [chunk(e.data) for e in events[:-1]]
    assert all(e.event == "message" for e in events)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    # Ids: the stream id and a sequence number counting up by one, no gap.
    assert [e.id for e in events] == [f"{stream_id}.{n}" for n in range(1, len(events) + 1)]

    # The first chunk carries the role, and the first token with it.
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(events[0].data)
    assert all("role" not in (c["choices"][0]["delta"] if c["choices"] else {})
               for c in chunks[1:])

    content_idx = [i for i, e in enumerate(events[:-1]) if content_of(e.data)]
    assert len(content_idx) >= 10, "tokens should arrive as separate events"
    # They arrived over time, not in one burst at the end.
    first, last = arrived[content_idx[0]], arrived[content_idx[-1]]
    assert last - first > 0.05, f"all {len(content_idx)} tokens arrived within {last - first:.3f}s"

    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1 and not chunks[-1]["choices"], "one usage-only chunk, last"
    assert usage[0]["completion_tokens"] == len(content_idx)
    assert 0 < usage[0]["completion_tokens"] <= 48
    assert usage[0]["prompt_tokens"] > 0
    assert usage[0]["total_tokens"] == usage[0]["prompt_tokens"] + usage[0]["completion_tokens"]
    assert "".join(content_of(e.data) for e in events[:-1]).strip()


async def test_client_disconnect_stops_the_generation_thread_within_a_second(
    serve_local: Callable[..., RunningServer],
) -> None:
    server = serve_local()
    provider = local_provider(server)
    assert not llama_threads()
    async with httpx.AsyncClient(timeout=60) as client, client.stream(
        "POST", f"{server.url}/v1/chat/completions", json=LONG_CHAT
    ) as response:
        assert response.status_code == 200
        async with aclosing(events_of(response)) as events:
            assert await tokens(events, 3) == 3
        # Mid-generation: the thread is working on the rest.
        assert len(llama_threads()) == 1
        assert provider.generations_running == 1
    # The client is gone (the response is closed): within a second, so is the generation,
    # and its slot is free (the loop takes the thread's last word just after it ends).
    assert wait_until(lambda: not llama_threads(), 1.0), "generation thread still running"
    assert wait_until(lambda: provider.generations_running == 0, 1.0), "slot still taken"

    # The slot was given back: the next request streams at once.
    got = await post_stream(f"{server.url}/v1/chat/completions",
                            {**LONG_CHAT, "max_tokens": 4})
    assert got.status == 200 and got.terminal.data == "[DONE]"


async def test_a_full_queue_is_a_503_while_the_admitted_requests_stream(
    serve_local: Callable[..., RunningServer],
) -> None:
    # One generating plus one waiting; the third is refused at once.
    server = serve_local(local_max_tokens=48, local_queue_size=1)
    url = f"{server.url}/optimize-stream"
    async with httpx.AsyncClient(timeout=60) as client, AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            client.stream("POST", f"{server.url}/v1/chat/completions", json=LONG_CHAT))
        assert first.status_code == 200
        first_events = await stack.enter_async_context(aclosing(events_of(first)))
        assert await tokens(first_events, 1) == 1

        second = await stack.enter_async_context(client.stream("POST", url, json=PROMPT))
        assert second.status_code == 200
        assert second.headers["content-type"].startswith("text/event-stream")
        assert len(llama_threads()) == 1, "the first is still generating"

        third = await client.post(url, json=PROMPT)
        assert third.status_code == 503
        assert third.headers["retry-after"] == "5"
        assert third.headers["content-type"] == "application/json"
        error = third.json()["error"]
        assert error["code"] == "overloaded"
        assert "busy" in error["message"]

        # The first keeps streaming after the refusal...
        assert await tokens(first_events, 3) == 3
        await first_events.aclose()
        await first.aclose()
        # ...and once it has gone, the second gets the model.
        second_events = await stack.enter_async_context(aclosing(events_of(second)))
        assert await tokens(second_events, 3) == 3
    assert wait_until(lambda: not llama_threads(), 1.0)


async def test_chat_completions_without_streaming(
    serve_local: Callable[..., RunningServer],
) -> None:
    server = serve_local(local_max_tokens=48)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "local", "max_tokens": 24,
                  "messages": [{"role": "user", "content": "Say hello to a customer."}]},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "local"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < body["usage"]["completion_tokens"] <= 24


async def test_a_generation_cancelled_twice_keeps_the_model_until_its_thread_ends() -> None:
    # A second cancel can cut the consumer's wait for the thread short; the model
    # must still not be handed to another generation while this thread runs on it.
    import asyncio
    import contextlib

    from promptcast.providers.base import ChatRequest, Message

    provider = LlamaProvider(Settings.from_env({}).models.get_spec("local"), max_tokens=2000)
    stream = await provider.stream_chat(ChatRequest(
        model="local", temperature=0, max_tokens=2000,
        messages=(Message("user", LONG_CHAT["messages"][0]["content"]),)))  # type: ignore[index]
    got: list[object] = []

    async def consume() -> None:
        async for piece in stream:
            got.append(piece)

    task = asyncio.create_task(consume())
    assert await wait_for_async(lambda: len(got) >= 3, 60)
    slot = provider._slot
    assert slot is not None and slot.locked()
    task.cancel()
    await asyncio.sleep(0)  # the generator is in its finally, waiting for the thread
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    while llama_threads():
        assert slot.locked(), "the slot was given back while the generation thread ran"
        await asyncio.sleep(0.001)
    assert await wait_for_async(lambda: not slot.locked(), 5)
    assert provider.generations_running == 0
    await stream.aclose()


async def wait_for_async(condition: Callable[[], bool], within: float) -> bool:
    """Whether `condition` came true within `within` s, checked as the loop turns."""
    import asyncio

    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def test_closing_a_paused_generation_stops_its_thread_before_it_returns() -> None:
    # The relay pauses a stream whose client lags; ending it then (a timeout, a
    # DELETE) must still stop the model's thread before the model is free again.
    import asyncio

    from promptcast.providers.base import ChatRequest, Message

    provider = LlamaProvider(Settings.from_env({}).models.get_spec("local"), max_tokens=2000)
    stream = await provider.stream_chat(ChatRequest(
        model="local", temperature=0, max_tokens=2000,
        messages=(Message("user", LONG_CHAT["messages"][0]["content"]),)))  # type: ignore[index]
    events: list[Event] = []

    class Listener:
        def event(self, event: Event) -> None:
            events.append(event)
            if len(events) == 2:
                stream.pause()  # as the relay does for a slow client

        def data(self, payload: bytes) -> None:
            pass

        def plain(self, run: object) -> None:
            pass

        def flush(self) -> None:
            pass

        def end(self, error: object) -> None:
            pass

    stream.push(Listener())
    assert await wait_for_async(lambda: len(events) >= 2 and bool(llama_threads()), 60)
    await asyncio.sleep(0.2)  # paused a while: the model's thread is still at work
    slot = provider._slot
    assert slot is not None
    await stream.aclose()
    # The model stays taken while the thread runs, and the thread ends at once.
    deadline = time.monotonic() + 1
    while llama_threads():
        assert slot.locked(), "the slot was given back while the generation thread ran"
        assert time.monotonic() < deadline, "the generation thread ran on after closing"
        await asyncio.sleep(0.001)
    assert await wait_for_async(lambda: not slot.locked(), 1)
    assert provider.generations_running == 0
