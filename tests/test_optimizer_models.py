"""The optimizer as an OpenAI model name (`service/optimizer_models.py`), by the `openai` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from promptcast.models import ModelTable
from promptcast.server.door import Door
from promptcast.service.optimizer_models import optimizer_name, split_name
from promptcast.service.prompts import Mode, build_messages

from .conftest import RunningServer, models_file
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

PROMPT = "你是一个客服助手，负责回答订单问题。"
OPENING = "您好，请问有什么可以帮您？"


def _sent(upstream: UpstreamDouble) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = upstream.requests[-1].json()["messages"]
    return messages


def _meta(prompt: str, mode: Mode, **kw: Any) -> list[dict[str, str]]:
    return [m.as_dict() for m in build_messages(prompt, mode, **kw)]


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused",
                                  max_retries=0, timeout=30) as sdk:
        yield sdk


# -- names ---------------------------------------------------------------------------


def test_names_split_into_mode_and_model(tmp_path: Any, upstream: UpstreamDouble) -> None:
    models = ModelTable.build({}, models_file(tmp_path, upstream))
    assert optimizer_name(Mode.EXPAND, "qwen-max") == "promptcast-expand/qwen-max"
    assert split_name("promptcast-optimize/qwen-max", models) == (Mode.OPTIMIZE, "qwen-max")
    assert split_name("promptcast-shorten/a/b", models) == (Mode.SHORTEN, "a/b")
    assert split_name("promptcast-优化/local", models) is None
    assert split_name("promptcast-optimize", models) is None
    assert split_name("qwen-max", models) is None


def test_a_configured_model_of_an_optimizers_name_stays_that_model(
        tmp_path: Any, upstream: UpstreamDouble) -> None:
    path = models_file(tmp_path, upstream, **{"promptcast-optimize/x": {
        "provider": "openai", "base_url": upstream.base_url}})
    assert split_name("promptcast-optimize/x", ModelTable.build({}, path)) is None


# -- GET /v1/models --------------------------------------------------------------------


async def test_the_model_list_names_three_optimizers_per_usable_model(
        client: openai.AsyncOpenAI) -> None:
    ids = [model.id for model in (await client.models.list()).data]
    for mode in ("optimize", "expand", "shorten"):
        assert f"promptcast-{mode}/scripted" in ids
        assert f"promptcast-{mode}/local" in ids
        assert f"promptcast-{mode}/keyed" not in ids  # no key: not usable
    by_id = {model.id: model for model in (await client.models.list()).data}
    assert by_id["promptcast-expand/scripted"].owned_by == "promptcast"
    assert by_id["promptcast-expand/scripted"].model_extra is not None
    assert by_id["promptcast-expand/scripted"].model_extra["available"] is True


# -- POST /v1/chat/completions -----------------------------------------------------------


async def test_one_completion_is_the_rewrite_of_the_last_user_message(
        client: openai.AsyncOpenAI, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["你是", "订单", "客服。"]))
    completion = await client.chat.completions.create(
        model="promptcast-optimize/scripted", max_tokens=300, temperature=0.3,
        messages=[{"role": "system", "content": "ignored"},
                  {"role": "user", "content": "an earlier turn"},
                  {"role": "assistant", "content": "ignored too"},
                  {"role": "user", "content": PROMPT}],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "你是订单客服。"
    # Upstream got the meta-prompt around the prompt, not the chat's messages.
    sent = upstream.requests[-1].json()
    assert sent["messages"] == _meta(PROMPT, Mode.OPTIMIZE)
    assert sent["model"] == "scripted-upstream"
    assert sent["max_tokens"] == 300 and sent["temperature"] == 0.3
    assert PROMPT not in [m["content"] for m in sent["messages"]]


def _asgi_only(app: Any, seen: list[str]) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await app(scope, receive, send)
    return wrapped  # any wrapper keeps the door shut: the app's route serves the start


@pytest.mark.parametrize("door", [True, False], ids=["door", "asgi-route"])
async def test_a_streamed_rewrite_with_opening_and_target_length(
        door: bool, serve: Callable[..., RunningServer], upstream: UpstreamDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    served: list[bool] = []
    start = Door.start

    def noted(self: Door, exchange: Any) -> Any:
        coroutine = start(self, exchange)
        served.append(coroutine is not None)
        return coroutine

    monkeypatch.setattr(Door, "start", noted)
    server = serve() if door else serve(setup=lambda app: _asgi_only(app, seen))
    upstream.enqueue(Script.chat(["Longer", " prompt", "."]))
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused",
                                  max_retries=0, timeout=30) as client:
        stream = await client.chat.completions.create(
            model="promptcast-expand/scripted", stream=True,
            messages=[{"role": "user", "content": "You answer order questions."}],
            extra_body={"opening": "Hello! How can I help?", "target_chars": 400},
        )
        text = "".join([chunk.choices[0].delta.content or ""
                        async for chunk in stream if chunk.choices])
    assert text == "Longer prompt."
    assert _sent(upstream) == _meta("You answer order questions.", Mode.EXPAND,
                                    opening="Hello! How can I help?", target_chars=400)
    assert "400" in _sent(upstream)[0]["content"]
    if door:
        assert served == [True]
    else:
        assert seen == ["/v1/chat/completions"] and served == []


async def test_each_mode_reaches_upstream_as_its_meta_prompt(
        client: openai.AsyncOpenAI, upstream: UpstreamDouble) -> None:
    for mode in Mode:
        upstream.enqueue(Script.chat(["ok"]))
        await client.chat.completions.create(
            model=f"promptcast-{mode.value}/scripted",
            messages=[{"role": "user", "content": PROMPT}])
        assert _sent(upstream) == _meta(PROMPT, mode)


async def test_an_opening_line_goes_into_the_meta_prompt(
        client: openai.AsyncOpenAI, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["ok"]))
    await client.chat.completions.create(
        model="promptcast-optimize/scripted",
        messages=[{"role": "user", "content": PROMPT}], extra_body={"opening": OPENING})
    assert _sent(upstream) == _meta(PROMPT, Mode.OPTIMIZE, opening=OPENING)


# -- refusals, before anything goes upstream ------------------------------------------------


async def test_no_user_message_is_a_422_naming_messages(
        client: openai.AsyncOpenAI, upstream: UpstreamDouble) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await client.chat.completions.create(
            model="promptcast-optimize/scripted",
            messages=[{"role": "system", "content": PROMPT}])
    assert caught.value.code == "invalid_request"
    assert "no user message" in caught.value.message
    assert caught.value.body["field"] == "messages"  # type: ignore[index]
    assert upstream.requests == []


@pytest.mark.parametrize(("model", "extra", "code", "words"), [
    ("promptcast-optimize/scripted", {"target_chars": 100}, "invalid_request",
     "applies to type 'expand' or 'shorten' only"),
    ("promptcast-shorten/scripted", {"target_chars": 0}, "invalid_request",
     "`target_chars` must be an integer"),
    ("promptcast-optimize/scripted", {"opening": 7}, "invalid_request",
     "`opening` must be a string"),
    ("promptcast-optimize/gpt-9", {}, "model_not_found", "unknown model 'gpt-9'"),
    ("promptcast-optimize/keyed", {}, "model_unavailable", "SCRIPTED_KEY"),
], ids=["target-on-optimize", "target-zero", "opening-number", "unknown", "no-key"])
@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
async def test_bad_requests_are_refused_with_the_apis_errors(
        client: openai.AsyncOpenAI, upstream: UpstreamDouble, model: str,
        extra: dict[str, Any], code: str, words: str, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(  # type: ignore[call-overload]
            model=model, stream=stream, extra_body=extra,
            messages=[{"role": "user", "content": PROMPT}])
    assert caught.value.code == code
    assert words in caught.value.message
    assert upstream.requests == []


async def test_an_empty_or_long_prompt_names_the_message(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    server = serve(max_prompt_chars=10)
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused",
                                  max_retries=0) as client:
        for content, words in (("  ", "is empty"), ("x" * 11, "the limit is 10")):
            with pytest.raises(openai.UnprocessableEntityError) as caught:
                await client.chat.completions.create(
                    model="promptcast-optimize/scripted",
                    messages=[{"role": "system", "content": "s"},
                              {"role": "user", "content": content}])
            assert words in caught.value.message
            assert caught.value.body["field"] == "messages[1].content"  # type: ignore[index]
    assert upstream.requests == []
