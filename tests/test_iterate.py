"""Iterating with feedback over HTTP: `previous` and `feedback` on both optimize routes,
through the split gateway too, and the 422s that send nothing upstream."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .conftest import RunningServer
from .sse_client import post_stream
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

PROMPT = "你是一个电商平台的客服助手，负责回答用户关于订单、物流和退换货的问题。"
PREVIOUS = "# 角色\n你是电商平台的客服助手。\n\n## 规则\n1. 先确认订单号。\n2. 语气友好。"
FEEDBACK = "不要反问用户"
REVISION = {"prompt": PROMPT, "type": "optimize", "previous": PREVIOUS, "feedback": FEEDBACK,
            "opening": "您好，请问有什么可以帮您？"}


def sent_messages(upstream: UpstreamDouble) -> tuple[str, str]:
    system, user = upstream.requests[-1].json()["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    return system["content"], user["content"]


def assert_a_revision(system: str, user: str) -> None:
    assert f"<prompt>\n{PROMPT}\n</prompt>" in user
    assert f"<rewrite>\n{PREVIOUS}\n</rewrite>" in user
    assert f"<feedback>{FEEDBACK}</feedback>" in user
    assert "<opening>您好，请问有什么可以帮您？</opening>" in user
    assert "只改反馈要求改的地方" in system and "用中文" in system


@pytest.mark.parametrize("path", ["/optimize-stream", "/prompt/optimize-prompt"])
async def test_a_revision_sends_the_rewrite_and_the_feedback(
    server: RunningServer, upstream: UpstreamDouble, path: str,
) -> None:
    upstream.enqueue(Script.chat(["# 角色\n", "你是客服助手。"]))
    got = await post_stream(f"{server.url}{path}", REVISION)
    assert got.status == 200
    assert got.content == "# 角色\n你是客服助手。"
    assert_a_revision(*sent_messages(upstream))


async def test_a_resumable_revision_sends_them_too(
    server: RunningServer, upstream: UpstreamDouble,
) -> None:
    got = await post_stream(f"{server.url}/optimize-stream", {**REVISION, "resumable": True})
    assert got.status == 200 and got.terminal.data == "[DONE]"
    assert_a_revision(*sent_messages(upstream))


async def test_a_revision_in_one_json_answer(
    server: RunningServer, upstream: UpstreamDouble,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{server.url}/prompt/optimize-prompt",
                                     json={**REVISION, "stream": False})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello, world!"
    assert_a_revision(*sent_messages(upstream))


async def test_the_split_gateway_forwards_a_revision(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble,
) -> None:
    model_service = serve()
    gateway = serve(upstream_url=model_service.url)
    got = await post_stream(f"{gateway.url}/optimize-stream", REVISION)
    assert got.status == 200 and got.content == "Hello, world!"
    forwarded = upstream.requests[-1]
    assert forwarded.path.endswith("/chat/completions")
    assert_a_revision(*sent_messages(upstream))


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"feedback": "更简洁"}, "previous", "`previous` is required with `feedback`"),
    ({"previous": PREVIOUS}, "feedback", "`feedback` is required with `previous`"),
    ({"previous": PREVIOUS, "feedback": "f" * 2001}, "feedback",
     "2001 characters; the limit is 2000"),
    ({"previous": "p" * 20001, "feedback": "f"}, "previous",
     "20001 characters; the limit is 20000"),
    ({"previous": PREVIOUS, "feedback": 3}, "feedback", "must be a string"),
    ({"previous": ["v1"], "feedback": "f"}, "previous", "must be a string"),
])
@pytest.mark.parametrize("path", ["/optimize-stream", "/prompt/optimize-prompt"])
async def test_bad_revisions_are_422s_naming_the_field_and_send_nothing(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble, path: str,
    extra: dict[str, object], field: str, words: str,
) -> None:
    server = serve(max_body_bytes=200_000)
    got = await post_stream(f"{server.url}{path}", {"prompt": PROMPT, **extra})
    assert got.status == 422
    assert got.body["error"]["code"] == "invalid_request"
    assert got.body["error"]["field"] == field
    assert words in got.body["error"]["message"]
    assert upstream.requests == []
