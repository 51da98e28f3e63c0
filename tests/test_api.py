"""The gateway and the model service over real HTTP, against the scripted upstream."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from promptcast.errors import PayloadTooLarge
from promptcast.server.http import read_json

from .conftest import RunningServer
from .sse_client import events_of, post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "你是一个客服助手，负责回答订单问题。", "type": "optimize"}


async def test_stream_relays_upstream_chunks_byte_for_byte(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    script = Script.chat(["首先", "，", "明确", "角色"])
    upstream.enqueue(script)
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 200
    sent = [line.removeprefix("data: ") for step in script.steps if isinstance(step, bytes)
            for line in step.decode().split("\n") if line.startswith("data: ")]
    assert got.data == sent
    assert got.content == "首先，明确角色"
    assert got.terminal.data == "[DONE]"
    stream_id = got.headers["x-stream-id"]
    assert [e.id for e in got.events] == [f"{stream_id}.{n}" for n in range(1, len(sent) + 1)]
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,32}", stream_id)


async def test_headers_are_those_of_an_event_stream(server: RunningServer) -> None:
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT,
                            headers={"Accept-Encoding": "gzip, br"})
    assert got.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert got.headers["cache-control"] == "no-cache, no-transform"
    assert got.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in got.headers
    assert "content-length" not in got.headers
    assert "keep-alive" not in got.headers.get("connection", "").lower()


async def test_the_original_front_end_path_is_answered(server: RunningServer) -> None:
    got = await post_stream(f"{server.url}/prod-api/optimize-stream", PROMPT)
    assert got.status == 200
    assert got.content == "Hello, world!"


async def test_each_event_is_sent_before_the_upstream_sends_the_next(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["first", gate, "second"]))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        contents = []
        async for ev in events_of(response):
            if ev.data == "[DONE]":
                break
            choices = json.loads(ev.data)["choices"]
            delta = choices[0]["delta"].get("content") if choices else None
            if delta:
                contents.append(delta)
                # The upstream holds "second" until the gate opens: "first" got
                # here on its own, so nothing was buffered.
                gate.set()
    assert contents == ["first", "second"]


async def test_defaults_and_meta_prompt_sent_upstream(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    await post_stream(f"{server.url}/optimize-stream", {"prompt": "You are a shop assistant."})
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    body = sent.json()
    assert body["model"] == "scripted-upstream"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    system, user = body["messages"]
    assert system["role"] == "system" and "Optimize the prompt" in system["content"]
    assert user == {"role": "user", "content": "<prompt>\nYou are a shop assistant.\n</prompt>"}
    assert sent.headers["accept"] == "text/event-stream"
    assert "authorization" not in sent.headers


@pytest.mark.parametrize(("mode", "marker"), [("扩写", "请扩写"), ("缩写", "请缩写"),
                                              ("优化", "请优化")])
async def test_chinese_modes_get_chinese_meta_prompts(
    server: RunningServer, upstream: UpstreamDouble, mode: str, marker: str
) -> None:
    got = await post_stream(f"{server.url}/optimize-stream",
                            {"prompt": "你是一个客服助手。", "type": mode,
                             "opening": "您好，请问有什么可以帮您？"})
    assert got.status == 200
    system = upstream.requests[-1].json()["messages"][0]["content"]
    assert marker in system and "开场白" in system
    user = upstream.requests[-1].json()["messages"][1]["content"]
    assert "<opening>您好，请问有什么可以帮您？</opening>" in user


async def test_api_key_is_sent_upstream_and_request_id_forwarded(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve({"SCRIPTED_KEY": "sk-test-abcdefghijklmnop"})
    await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "keyed"},
                      headers={"X-Request-ID": "req-42"})
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-test-abcdefghijklmnop"
    assert upstream.requests[-1].headers["x-request-id"] == "req-42"


# -- failures before the first byte: HTTP errors with a JSON body --------------

@pytest.mark.parametrize(
    ("body", "status", "code", "field", "words"),
    [
        (b'{"prompt": ', 400, "invalid_json", None, "not valid JSON"),
        (b"[1, 2]", 400, "invalid_json", None, "JSON object"),
        (b"", 400, "invalid_json", None, "empty"),
        (b"{}", 422, "invalid_request", "prompt", "`prompt` is required"),
        (b'{"prompt": "  "}', 422, "invalid_request", "prompt", "empty"),
        (b'{"prompt": 3}', 422, "invalid_request", "prompt", "string"),
        (b'{"prompt": "x", "type": "translate"}', 422, "invalid_request", "type",
         "'optimize', 'expand', 'shorten', '优化', '扩写', '缩写'"),
        (b'{"prompt": "x", "model": "gpt-9"}', 404, "model_not_found", "model", "scripted"),
        (b'{"prompt": "x", "model": "keyed"}', 422, "model_unavailable", "model",
         "set SCRIPTED_KEY"),
        (b'{"prompt": "x", "model": "qwen-max"}', 422, "model_unavailable", "model",
         "DASHSCOPE_API_KEY"),
        (b'{"prompt": "x", "opening": 5}', 422, "invalid_request", "opening", "string"),
        (b'{"prompt": "x", "stream": false}', 422, "invalid_request", "stream", "stream"),
        (b'{"prompt": "x", "type": "expand", "target_chars": -3}', 422, "invalid_request",
         "target_chars", "1 to 100000"),
    ],
)
async def test_bad_requests_get_clear_json_errors(
    server: RunningServer, body: bytes, status: int, code: str, field: str | None, words: str
) -> None:
    got = await post_stream(f"{server.url}/optimize-stream", body)
    assert got.status == status
    assert got.headers["content-type"] == "application/json"
    error = got.body["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert words in error["message"]


async def test_prompt_over_the_limit_names_the_limit(serve: Callable[..., RunningServer]) -> None:
    server = serve(max_prompt_chars=100)
    got = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x" * 101})
    assert got.status == 422
    assert got.body["error"]["field"] == "prompt"
    assert "101 characters; the limit is 100" in got.body["error"]["message"]


async def test_body_over_the_limit_is_413(serve: Callable[..., RunningServer]) -> None:
    server = serve(max_body_bytes=1024)
    got = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x" * 2000})
    assert got.status == 413
    assert got.body["error"]["code"] == "payload_too_large"
    assert "1024-byte limit" in got.body["error"]["message"]


async def test_a_body_sent_in_pieces_is_read_whole_and_still_bounded(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(max_body_bytes=1024)
    body = json.dumps(PROMPT, ensure_ascii=False).encode()

    async def pieces(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):  # chunked, several reads on the server's side
            yield data[i:i + 7]

    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient() as client:
        ok = await client.post(f"{server.url}/optimize-stream", content=pieces(body),
                                headers=headers)
        too_big = await client.post(f"{server.url}/optimize-stream",
                                    content=pieces(b'{"prompt": "' + b"x" * 2000 + b'"}'),
                                    headers=headers)
    assert ok.status_code == 200
    assert ok.content.endswith(b"data: [DONE]\n\n")
    assert PROMPT["prompt"] in upstream.requests[-1].json()["messages"][1]["content"]
    assert too_big.status_code == 413


# A character split across messages, and the one-message fast path.
@pytest.mark.parametrize("pieces", [[b'{"a": ', b'"\xe4\xbd', b'\xa0"}'],
                                    [b'{"a": "\xe4\xbd\xa0"}']])
async def test_read_json_joins_the_messages_of_a_body(pieces: list[bytes]) -> None:
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request({"type": "http", "headers": []}, receive)
    assert await read_json(request, 100) == {"a": "你"}


async def test_read_json_counts_every_message_against_the_limit() -> None:
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 2

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    with pytest.raises(PayloadTooLarge):
        await read_json(Request({"type": "http", "headers": []}, receive), 100)


async def test_non_json_body_is_415(server: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/optimize-stream", data={"prompt": "x"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


async def test_unknown_route_and_method_are_json(server: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{server.url}/nope")
        wrong = await client.get(f"{server.url}/optimize-stream")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("script", "status", "code"),
    [
        (Script.error(401, "invalid api key"), 502, "upstream_unauthorized"),
        (Script.error(500, "boom"), 502, "upstream_error"),
        (Script.error(503, "overloaded"), 503, "upstream_unavailable"),
        (Script.raw(b"<html>hi</html>", content_type="text/html"), 502, "bad_upstream_stream"),
    ],
)
async def test_upstream_failures_before_the_first_byte_are_http_errors(
    server: RunningServer, upstream: UpstreamDouble, script: Script, status: int, code: str
) -> None:
    upstream.enqueue(script)
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == status
    assert got.body["error"]["code"] == code


async def test_upstream_rate_limit_keeps_retry_after(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.error(429, "slow down", retry_after="7"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 429
    assert got.headers["retry-after"] == "7"
    assert got.body["error"]["code"] == "upstream_rate_limited"
    assert "slow down" in got.body["error"]["message"]


async def test_unreachable_upstream_is_a_502(serve: Callable[..., RunningServer],
                                             upstream: UpstreamDouble) -> None:
    server = serve()
    upstream.stop()
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 502
    assert got.body["error"]["code"] == "upstream_unreachable"


# -- failures after the first byte: one terminal frame, never [DONE] ----------

@pytest.mark.parametrize(
    ("script", "code"),
    [
        (Script.chat(["partial"], then="drop"), "upstream_closed"),
        (Script.chat(["partial"], done=False, finish=None, usage=False), "upstream_closed"),
        (Script.raw(event(chunk_json("ok")), b"data: {not json\n\n", b"data: [DONE]\n\n"),
         "bad_upstream_stream"),
        (Script.raw(event(chunk_json("ok")),
                    event(json.dumps({"error": {"message": "model overloaded"}})),
                    b"data: [DONE]\n\n"), "upstream_error"),
    ],
)
async def test_mid_stream_failures_end_with_an_error_frame(
    server: RunningServer, upstream: UpstreamDouble, script: Script, code: str
) -> None:
    upstream.enqueue(script)
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 200
    assert got.terminal.event == "error"
    assert got.error()["code"] == code
    assert "[DONE]" not in got.data
    assert got.raw.endswith(b"\n\n")


async def test_error_frames_never_carry_the_api_key(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    key = "sk-live-0123456789abcdefSECRET"
    server = serve({"SCRIPTED_KEY": key})
    upstream.enqueue(
        Script.raw(event(chunk_json("ok")),
                   event(json.dumps({"error": {"message": f"bad key {key} for Bearer {key}"}}))),
        Script.error(401, f"Incorrect API key provided: {key}"),
    )
    mid = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "keyed"})
    before = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "keyed"})
    assert mid.terminal.event == "error" and before.status == 502
    for raw in (mid.raw, before.raw):
        assert key.encode() not in raw
        assert b"SECRET" not in raw
    assert "***" in before.body["error"]["message"]


# -- limits: timeouts and heartbeats ------------------------------------------

async def test_first_token_timeout(serve: Callable[..., RunningServer],
                                   upstream: UpstreamDouble) -> None:
    server = serve(first_token_timeout=0.3)
    upstream.enqueue(Script.raw(then="hang"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert [e.event for e in got.events] == ["timeout"]
    assert got.error() == {"code": "timeout", "message": "no first token within 0.3 s"}
    assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)


async def test_idle_timeout_after_some_chunks(serve: Callable[..., RunningServer],
                                              upstream: UpstreamDouble) -> None:
    server = serve(idle_timeout=0.3)
    upstream.enqueue(Script.chat(["one", "two"], then="hang"))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.content == "onetwo"
    assert got.terminal.event == "timeout"
    assert got.error()["message"] == "no data from the model for 0.3 s"
    assert "[DONE]" not in got.data


async def test_total_timeout(serve: Callable[..., RunningServer],
                             upstream: UpstreamDouble) -> None:
    server = serve(total_timeout=0.5, idle_timeout=5)
    upstream.enqueue(Script.chat(["tick"] * 100, gap=0.05))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.event == "timeout"
    assert got.error()["message"] == "the stream reached its 0.5 s limit"
    assert 0 < got.content.count("tick") < 100


async def test_heartbeats_while_waiting_for_the_first_token(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(heartbeat_interval=0.1)
    gate = upstream.gate()
    upstream.enqueue(Script.raw(gate, event(chunk_json("late")),
                                event(chunk_json(finish="stop")), b"data: [DONE]\n\n"))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        raw = b""
        async for part in response.aiter_raw():
            raw += part
            if raw.count(b": keep-alive\n\n") >= 3:
                gate.set()
    head, _, rest = raw.partition(b"id: ")
    assert head.count(b": keep-alive\n\n") >= 3 and head.replace(b": keep-alive\n\n", b"") == b""
    assert b"late" in rest and rest.endswith(b"data: [DONE]\n\n")


async def test_heartbeat_never_lands_inside_an_event(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(heartbeat_interval=0.05)
    pieces: list[str | float] = []
    for i in range(20):
        pieces += [f"line {i}\nwith\r\nbreaks", 0.03]
    upstream.enqueue(Script.chat(pieces))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.terminal.data == "[DONE]"
    for block in got.raw.split(b"\n\n")[:-1]:
        lines = block.split(b"\n")
        assert lines == [b": keep-alive"] or all(
            not line.startswith(b":") for line in lines
        ), block


# -- the client leaves: the upstream stops ------------------------------------

async def test_disconnect_cancels_the_upstream_within_a_second(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["tok"] * 1000, gap=0.02))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{server.url}/optimize-stream", json=PROMPT
    ) as response:
        seen = 0
        async for _ in events_of(response):
            seen += 1
            if seen == 3:
                break
    assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)
    assert await upstream.until(lambda: upstream.open_connections == 0, 1.0)
    assert upstream.completed == 0


# -- the model service --------------------------------------------------------

async def test_model_service_streams_openai_chunks(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    got = await post_stream(f"{server.url}/prompt/optimize-prompt", PROMPT)
    assert got.status == 200
    assert json.loads(got.data[0])["object"] == "chat.completion.chunk"
    assert got.content == "Hello, world!" and got.terminal.data == "[DONE]"


async def test_model_service_without_stream_returns_one_completion(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/prompt/optimize-prompt",
                                     json={**PROMPT, "stream": False})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 4


async def test_models_list_marks_unusable_models(server: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        data = (await client.get(f"{server.url}/v1/models")).json()["data"]
    by_id = {m["id"]: m for m in data}
    assert by_id["scripted"]["available"] is True and by_id["scripted"]["default"] is True
    assert by_id["keyed"] == {**by_id["keyed"], "available": False,
                              "unavailable_reason": "set SCRIPTED_KEY"}
    assert {"qwen-max", "qwen-plus", "qwen-turbo", "gpt-3.5-turbo", "gpt-4o-mini",
            "local"} <= set(by_id)
    assert by_id["local"]["available"] is True


async def test_fallback_model_is_tried_before_the_first_byte(
    tmp_path_factory: pytest.TempPathFactory, upstream: UpstreamDouble
) -> None:
    from promptcast.settings import Settings

    from .conftest import models_file, start_server

    path = models_file(tmp_path_factory.mktemp("fb"), upstream)
    path.write_text(path.read_text() + '\n[models."primary"]\nprovider = "openai"\n'
                    'base_url = "http://127.0.0.1:9/v1"\nfallbacks = ["scripted"]\n')
    server = start_server(Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path)}))
    try:
        got = await post_stream(f"{server.url}/optimize-stream", {**PROMPT, "model": "primary"})
    finally:
        server.stop()
    assert got.status == 200 and got.content == "Hello, world!"


async def test_an_upstream_that_never_answers_is_a_504(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(first_token_timeout=0.5)
    upstream.enqueue(Script(first_delay=60))
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 504
    assert got.body["error"] == {"code": "timeout",
                                 "message": "the model did not start answering within 0.5 s"}
    assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)


async def test_disconnect_before_the_first_byte_cancels_the_upstream(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script(first_delay=60))
    async with httpx.AsyncClient(timeout=0.5) as client:
        # The client gives up waiting for the headers and hangs up.
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{server.url}/optimize-stream", json=PROMPT)
    assert await upstream.until(lambda: upstream.client_closed == 1, 1.0)


async def test_a_client_that_stops_reading_is_cut_off(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve(idle_timeout=1.0, heartbeat_interval=0.2)
    big = "x" * 60_000
    upstream.enqueue(Script.chat([big] * 400))
    _, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    body = json.dumps(PROMPT).encode()
    writer.write(b"POST /optimize-stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    # Never read: the server's buffers fill, the relay stops reading upstream,
    # and the idle limit ends the stream and closes the upstream.
    assert await upstream.until(lambda: upstream.client_closed == 1, 10.0)
    assert upstream.completed == 0
    writer.close()


async def test_a_full_streams_store_is_a_counted_error_with_the_request_id(
        serve: Callable[..., RunningServer], upstream: UpstreamDouble) -> None:
    server = serve(store_max_bytes=100)
    upstream.enqueue(Script.chat(["x" * 200]))
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(f"{server.url}/optimize-stream",
                                  json={**PROMPT, "resumable": True})
        assert first.status_code == 200  # it filled the store
        second = await client.post(f"{server.url}/optimize-stream",
                                   json={**PROMPT, "resumable": True},
                                   headers={"X-Request-ID": "second-2"})
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert second.status_code == 503 and second.json()["error"]["code"] == "store_full"
    assert second.headers["x-request-id"] == "second-2"
    # The first stream's own failure, and this start's refusal.
    assert re.search(r'promptcast_errors_total\{code="store_full",model="scripted"\} 2\.0',
                     metrics), metrics


@pytest.mark.parametrize(("path", "key"), [
    ("/optimize-stream", ""), ("/prompt/optimize-prompt", ""),
    ("/prompt/optimize-prompt", "k" * 300),
])
async def test_an_idempotency_key_matters_only_where_streams_are_resumable(
        server: RunningServer, path: str, key: str) -> None:
    # An empty one anywhere, and any one on the model service, is not a resumable start.
    got = await post_stream(f"{server.url}{path}", PROMPT, headers={"Idempotency-Key": key})
    assert got.status == 200 and got.terminal.data == "[DONE]"


async def test_the_content_type_is_refused_before_a_large_body_is_read(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(max_body_bytes=1000)
    async with httpx.AsyncClient(timeout=10) as client:
        got = await client.post(f"{server.url}/optimize-stream", content=b"x" * 5000,
                                headers={"Content-Type": "text/plain"})
    assert got.status_code == 415


async def test_with_cors_on_every_stream_says_it_varies_by_origin(
        serve: Callable[..., RunningServer]) -> None:
    # Caches must not hand a response made for no Origin to one with an Origin.
    server = serve(cors_origins="https://app.example")
    got = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert got.status == 200 and "origin" in got.headers.get("vary", "").lower()
