"""The official `openai` SDK against promptcast's `/v1`, as a user would point it there."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from .conftest import RunningServer
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Greet the customer."}]


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused",
                                  max_retries=0, timeout=30) as sdk:
        yield sdk


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    by_id = {model.id: model for model in page.data}
    assert {"scripted", "keyed", "local", "qwen-max", "qwen-plus", "qwen-turbo",
            "gpt-3.5-turbo", "gpt-4o-mini"} <= set(by_id)
    assert all(model.object == "model" for model in page.data)
    assert by_id["scripted"].owned_by == "openai"
    assert by_id["local"].owned_by == "llama"
    # promptcast's own fields ride along as extras the SDK keeps.
    assert by_id["keyed"].model_extra is not None
    assert by_id["keyed"].model_extra["available"] is False
    assert by_id["keyed"].model_extra["unavailable_reason"] == "set SCRIPTED_KEY"


async def test_create_without_streaming(client: openai.AsyncOpenAI,
                                        upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["Hello", " there", "!"]))
    completion = await client.chat.completions.create(
        model="scripted", messages=MESSAGES, max_tokens=20, temperature=0.2,  # type: ignore[arg-type]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "scripted"
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there!"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    # What the SDK sent went upstream as a chat request.
    sent = upstream.requests[-1].json()
    assert sent["messages"] == MESSAGES
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0.2


async def test_create_streaming_with_usage(client: openai.AsyncOpenAI,
                                           upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["你好", "，", "请问", "有什么", "可以帮您？"]))
    stream = await client.chat.completions.create(
        model="scripted", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    deltas: list[str] = []
    usage = []
    finish = None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            assert chunk.choices == []
            usage.append(chunk.usage)
    assert "".join(deltas) == "你好，请问有什么可以帮您？"
    assert [d for d in deltas if d] == ["你好", "，", "请问", "有什么", "可以帮您？"]
    assert finish == "stop"
    assert len(usage) == 1 and usage[0].completion_tokens == 5


async def test_create_streaming_without_usage(client: openai.AsyncOpenAI,
                                              upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["Hi", "!"]))
    stream = await client.chat.completions.create(
        model="scripted", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi!"
    assert all(c.choices for c in chunks), "no usage-only chunk without include_usage"
    assert all(c.usage is None for c in chunks)


async def test_unknown_model_is_not_found_listing_the_models(
    client: openai.AsyncOpenAI, upstream: UpstreamDouble
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-9", messages=MESSAGES, stream=stream,  # type: ignore[call-overload]
            )
        error = caught.value
        assert error.status_code == 404
        assert error.code == "model_not_found"
        assert "unknown model 'gpt-9'" in error.message
        assert "scripted" in error.message and "local" in error.message
    assert upstream.requests == []


async def test_model_without_key_is_unprocessable(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await client.chat.completions.create(model="keyed", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "model_unavailable"
    assert "SCRIPTED_KEY" in caught.value.message


async def test_a_stream_that_fails_midway_raises_in_the_sdk(
    client: openai.AsyncOpenAI, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["partial"], then="drop"))
    stream = await client.chat.completions.create(
        model="scripted", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
    )
    deltas = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                deltas.append(chunk.choices[0].delta.content or "")
    assert "".join(deltas) == "partial"
    assert "dropped the connection mid-stream" in caught.value.message
