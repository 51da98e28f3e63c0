"""Request bodies: JSON decoding, /optimize-stream bodies and chat completion bodies."""

from __future__ import annotations

from typing import Any

import pytest

from promptcast.errors import InvalidField, InvalidJSON
from promptcast.providers.base import Message
from promptcast.service.prompts import Mode
from promptcast.service.schemas import (
    ChatCompletionBody,
    OptimizeRequest,
    parse_chat,
    parse_json,
    parse_optimize,
)

# ---------------------------------------------------------------- parse_json


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"  \r\n\t", "empty"),
        (b"{", "not valid JSON"),
        (b"{'prompt': 'x'}", "not valid JSON"),
        (b'{"prompt": "x"} trailing', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "JSON object, not list"),
        (b'"prompt"', "JSON object, not str"),
        (b"42", "JSON object, not int"),
        (b"null", "JSON object, not NoneType"),
        (b"true", "JSON object, not bool"),
    ],
)
def test_parse_json_refuses(body: bytes, words: str) -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_json(body)
    error = info.value
    assert (error.http_status, error.error_code) == (400, "invalid_json")
    assert words in error.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{}", {}),
        (b'{"prompt": "\xe4\xbd\xa0\xe5\xa5\xbd"}', {"prompt": "你好"}),
        (b' \n{"prompt": "\\u4f60", "opening": null}\n ', {"prompt": "你", "opening": None}),
    ],
)
def test_parse_json_accepts_objects(body: bytes, expected: dict[str, Any]) -> None:
    assert parse_json(body) == expected


# ------------------------------------------------------------ parse_optimize

def optimize(data: dict[str, Any]) -> OptimizeRequest:
    return parse_optimize(
        data, default_model="the-default", max_prompt_chars=100, max_opening_chars=20
    )


ALL_MODES = ["'optimize'", "'expand'", "'shorten'", "'优化'", "'扩写'", "'缩写'"]

OPTIMIZE_ERRORS = [
    # body, field, words the message must contain
    ({}, "prompt", ["required"]),
    ({"prompt": None}, "prompt", ["required"]),
    ({"prompt": 5}, "prompt", ["string"]),
    ({"prompt": ["a"]}, "prompt", ["string"]),
    ({"prompt": ""}, "prompt", ["empty"]),
    ({"prompt": " \n\t "}, "prompt", ["empty"]),
    ({"prompt": "x" * 101}, "prompt", ["101", "100"]),
    ({"prompt": "长" * 101}, "prompt", ["101", "100"]),  # characters, not bytes
    ({"prompt": "p", "type": "translate"}, "type", [*ALL_MODES, "'translate'"]),
    ({"prompt": "p", "type": "OPTIMIZE"}, "type", ALL_MODES),
    ({"prompt": "p", "type": 1}, "type", ALL_MODES),
    ({"prompt": "p", "type": ["optimize"]}, "type", ALL_MODES),
    ({"prompt": "p", "model": 5}, "model", ["string"]),
    ({"prompt": "p", "model": ["qwen-max"]}, "model", ["string"]),
    ({"prompt": "p", "opening": 5}, "opening", ["string or null"]),
    ({"prompt": "p", "opening": {"text": "hi"}}, "opening", ["string or null"]),
    ({"prompt": "p", "opening": "o" * 21}, "opening", ["21", "20"]),
    ({"prompt": "p", "target_chars": 100}, "target_chars", ["'expand'", "'shorten'"]),
    ({"prompt": "p", "type": "优化", "target_chars": 100}, "target_chars", ["'expand'"]),
    ({"prompt": "p", "type": "expand", "target_chars": 0}, "target_chars", ["1", "100000"]),
    ({"prompt": "p", "type": "expand", "target_chars": -3}, "target_chars", ["1", "100000"]),
    ({"prompt": "p", "type": "shorten", "target_chars": 100_001}, "target_chars", ["100000"]),
    ({"prompt": "p", "type": "shorten", "target_chars": "50"}, "target_chars", ["integer"]),
    ({"prompt": "p", "type": "shorten", "target_chars": 50.5}, "target_chars", ["integer"]),
    ({"prompt": "p", "type": "shorten", "target_chars": True}, "target_chars", ["integer"]),
    ({"prompt": "p", "stream": "true"}, "stream", ["true or false"]),
    ({"prompt": "p", "stream": 1}, "stream", ["true or false"]),
    ({"prompt": "p", "stream": None}, "stream", ["true or false"]),
    ({"prompt": "p", "resumable": "yes"}, "resumable", ["true or false"]),
    ({"prompt": "p", "resumable": 0}, "resumable", ["true or false"]),
    # A revision: both `previous` and `feedback`, or neither; capped like prompt and opening.
    ({"prompt": "p", "feedback": "更简洁"}, "previous", ["required with `feedback`"]),
    ({"prompt": "p", "previous": None, "feedback": "shorter"}, "previous", ["required"]),
    ({"prompt": "p", "previous": "", "feedback": "shorter"}, "previous", ["required"]),
    ({"prompt": "p", "previous": "v1"}, "feedback", ["required with `previous`"]),
    ({"prompt": "p", "previous": "v1", "feedback": ""}, "feedback", ["required"]),
    ({"prompt": "p", "previous": "  \n", "feedback": "x"}, "previous", ["blank"]),
    ({"prompt": "p", "previous": "v1", "feedback": " \t"}, "feedback", ["blank"]),
    ({"prompt": "p", "previous": "x" * 101, "feedback": "f"}, "previous", ["101", "100"]),
    ({"prompt": "p", "previous": "v1", "feedback": "长" * 21}, "feedback", ["21", "20"]),
    ({"prompt": "p", "previous": 3, "feedback": "f"}, "previous", ["string"]),
    ({"prompt": "p", "previous": "v1", "feedback": ["f"]}, "feedback", ["string"]),
]


@pytest.mark.parametrize(("data", "field", "words"), OPTIMIZE_ERRORS)
def test_parse_optimize_errors_name_the_field(
    data: dict[str, Any], field: str, words: list[str]
) -> None:
    with pytest.raises(InvalidField) as info:
        optimize(data)
    error = info.value
    assert (error.http_status, error.error_code, error.field) == (422, "invalid_request", field)
    assert f"`{field}`" in error.message
    for word in words:
        assert word in error.message
    assert error.body() == {
        "error": {"code": "invalid_request", "message": error.message, "field": field}
    }


def test_parse_optimize_fills_defaults() -> None:
    assert optimize({"prompt": "你是客服助手"}) == OptimizeRequest(
        prompt="你是客服助手",
        mode=Mode.OPTIMIZE,
        model="the-default",
        opening=None,
        target_chars=None,
        stream=True,
        resumable=False,
    )


@pytest.mark.parametrize(
    ("type_", "mode"),
    [
        ("optimize", Mode.OPTIMIZE), ("expand", Mode.EXPAND), ("shorten", Mode.SHORTEN),
        ("优化", Mode.OPTIMIZE), ("扩写", Mode.EXPAND), ("缩写", Mode.SHORTEN),
    ],
)
def test_parse_optimize_mode_names(type_: str, mode: Mode) -> None:
    assert optimize({"prompt": "p", "type": type_}).mode is mode


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        ({"model": "qwen-max"}, "model", "qwen-max"),
        ({"model": ""}, "model", "the-default"),
        ({"model": None}, "model", "the-default"),
        ({"opening": "您好！"}, "opening", "您好！"),
        ({"opening": ""}, "opening", None),
        ({"opening": None}, "opening", None),
        ({"opening": "o" * 20}, "opening", "o" * 20),  # at the limit
        ({"type": "expand", "target_chars": 1}, "target_chars", 1),
        ({"type": "扩写", "target_chars": 100_000}, "target_chars", 100_000),
        ({"type": "shorten", "target_chars": None}, "target_chars", None),
        ({"stream": False}, "stream", False),
        ({"resumable": True}, "resumable", True),
        ({"unknown_extra": 1}, "stream", True),  # extra fields are ignored
        ({"previous": "v1", "feedback": "更简洁"}, "previous", "v1"),
        ({"previous": "v1", "feedback": "更简洁"}, "feedback", "更简洁"),
        ({"previous": "x" * 100, "feedback": "f" * 20}, "previous", "x" * 100),  # at the limits
        ({"previous": None, "feedback": None}, "previous", None),
    ],
)
def test_parse_optimize_values(data: dict[str, Any], name: str, expected: Any) -> None:
    assert getattr(optimize({"prompt": "p", **data}), name) == expected


@pytest.mark.parametrize("prompt", ["x" * 100, "  leading and trailing  \n", "a\r\nb\tc {{x}}"])
def test_parse_optimize_keeps_the_prompt_verbatim(prompt: str) -> None:
    assert optimize({"prompt": prompt}).prompt == prompt


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": "p"},
        {"prompt": "p", "type": "缩写", "model": "m", "opening": "hi", "target_chars": 10},
        {"prompt": "p", "type": "expand", "stream": False},
        {"prompt": "p", "previous": "v1 text", "feedback": "add refunds"},
    ],
)
def test_as_json_round_trips(data: dict[str, Any]) -> None:
    request = optimize(data)
    forwarded = request.as_json()
    assert forwarded["type"] in ("optimize", "expand", "shorten")  # canonical name upstream
    assert ("opening" in forwarded) is (request.opening is not None)
    assert ("target_chars" in forwarded) is (request.target_chars is not None)
    assert ("previous" in forwarded) is ("feedback" in forwarded) is (request.previous is not None)
    assert optimize(forwarded) == request


# ---------------------------------------------------------------- parse_chat


def chat(data: dict[str, Any]) -> ChatCompletionBody:
    return parse_chat(data, default_model="the-default")


USER = {"role": "user", "content": "hi"}
ROLES = "system, user, assistant, developer, tool"

CHAT_ERRORS = [
    ({}, "messages", ["non-empty list"]),
    ({"messages": []}, "messages", ["non-empty list"]),
    ({"messages": "hi"}, "messages", ["non-empty list"]),
    ({"messages": {"role": "user"}}, "messages", ["non-empty list"]),
    ({"messages": ["hi"]}, "messages[0]", ["object"]),
    ({"messages": [USER, 5]}, "messages[1]", ["object"]),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", [ROLES]),
    ({"messages": [{"content": "x"}]}, "messages[0].role", [ROLES]),
    ({"messages": [USER, {"role": "", "content": "x"}]}, "messages[1].role", [ROLES]),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
     ["string or a list of text parts"]),
    ({"messages": [{"role": "user"}]}, "messages[0].content", ["string or a list of text parts"]),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content", ["text"]),
    ({"messages": [{"role": "user", "content": ["just a string"]}]},
     "messages[0].content", ["text"]),
    ({"messages": [USER], "model": 5}, "model", ["string"]),
    ({"messages": [USER], "max_tokens": 0}, "max_tokens", ["positive integer"]),
    ({"messages": [USER], "max_tokens": -1}, "max_tokens", ["positive integer"]),
    ({"messages": [USER], "max_tokens": "10"}, "max_tokens", ["positive integer"]),
    ({"messages": [USER], "max_tokens": 1.5}, "max_tokens", ["positive integer"]),
    ({"messages": [USER], "max_tokens": True}, "max_tokens", ["positive integer"]),
    ({"messages": [USER], "max_tokens": 2**64}, "max_tokens", ["at most 1000000"]),
    ({"messages": [USER], "max_completion_tokens": 0}, "max_completion_tokens",
     ["positive integer"]),
    ({"messages": [USER], "max_completion_tokens": "5", "max_tokens": 5},
     "max_completion_tokens", ["positive integer"]),
    ({"messages": [USER], "stop": 5}, "stop", ["string or a list of strings"]),
    ({"messages": [USER], "stop": [1]}, "stop", ["string or a list of strings"]),
    ({"messages": [USER], "stop": ["a", None]}, "stop", ["string or a list of strings"]),
    ({"messages": [USER], "temperature": 2.5}, "temperature", ["0 to 2"]),
    ({"messages": [USER], "temperature": -0.1}, "temperature", ["0 to 2"]),
    ({"messages": [USER], "temperature": "1"}, "temperature", ["0 to 2"]),
    ({"messages": [USER], "temperature": True}, "temperature", ["0 to 2"]),
    ({"messages": [USER], "top_p": 1.01}, "top_p", ["0 to 1"]),
    ({"messages": [USER], "top_p": -1}, "top_p", ["0 to 1"]),
    ({"messages": [USER], "stream": "true"}, "stream", ["true or false"]),
    ({"messages": [USER], "stream": 1}, "stream", ["true or false"]),
    ({"messages": [USER], "stream_options": "include_usage"}, "stream_options", ["object"]),
]


@pytest.mark.parametrize(("data", "field", "words"), CHAT_ERRORS)
def test_parse_chat_errors_name_the_field(
    data: dict[str, Any], field: str, words: list[str]
) -> None:
    with pytest.raises(InvalidField) as info:
        chat(data)
    error = info.value
    assert (error.http_status, error.error_code, error.field) == (422, "invalid_request", field)
    assert f"`{field}`" in error.message
    for word in words:
        assert word in error.message


def test_parse_chat_defaults() -> None:
    body = chat({"messages": [USER]})
    assert body.request.model == "the-default"
    assert body.request.messages == (Message("user", "hi"),)
    assert body.request.max_tokens is None
    assert body.request.temperature is None
    assert body.request.top_p is None
    assert body.request.stop == ()
    assert body.stream is False
    assert body.include_usage is False


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("plain", "plain"),
        ("", ""),
        ([{"type": "text", "text": "one "}, {"type": "text", "text": "two"}], "one two"),
        ([{"type": "text", "text": "你好"}], "你好"),
        ([], ""),
    ],
)
def test_parse_chat_content_string_or_text_parts(content: Any, text: str) -> None:
    body = chat({"messages": [{"role": "user", "content": content}]})
    assert body.request.messages == (Message("user", text),)


def test_parse_chat_keeps_every_role_in_order() -> None:
    roles = ["system", "developer", "user", "assistant", "tool", "user"]
    body = chat({"messages": [{"role": r, "content": str(i)} for i, r in enumerate(roles)]})
    assert body.request.messages == tuple(Message(r, str(i)) for i, r in enumerate(roles))


@pytest.mark.parametrize(
    ("extra", "max_tokens"),
    [
        ({"max_tokens": 7}, 7),
        ({"max_completion_tokens": 9}, 9),
        ({"max_completion_tokens": 9, "max_tokens": 7}, 9),  # the newer name wins
        ({"max_completion_tokens": None, "max_tokens": 7}, 7),
        ({"max_tokens": None}, None),
    ],
)
def test_parse_chat_max_completion_tokens_alias(
    extra: dict[str, Any], max_tokens: int | None
) -> None:
    assert chat({"messages": [USER], **extra}).request.max_tokens == max_tokens


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ("END",)), (["a", "b"], ("a", "b")), ([], ()), (None, ())],
)
def test_parse_chat_stop_string_or_list(stop: Any, expected: tuple[str, ...]) -> None:
    assert chat({"messages": [USER], "stop": stop}).request.stop == expected


@pytest.mark.parametrize(
    ("extra", "name", "expected"),
    [
        ({"model": "qwen-max"}, "model", "qwen-max"),
        ({"model": ""}, "model", "the-default"),
        ({"temperature": 0}, "temperature", 0.0),
        ({"temperature": 2}, "temperature", 2.0),
        ({"temperature": 0.7}, "temperature", 0.7),
        ({"top_p": 1}, "top_p", 1.0),
        ({"top_p": 0.0}, "top_p", 0.0),
    ],
)
def test_parse_chat_request_values(extra: dict[str, Any], name: str, expected: Any) -> None:
    value = getattr(chat({"messages": [USER], **extra}).request, name)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("extra", "stream", "include_usage"),
    [
        ({"stream": True}, True, False),
        ({"stream": True, "stream_options": {"include_usage": True}}, True, True),
        ({"stream": True, "stream_options": {}}, True, False),
        ({"stream": True, "stream_options": None}, True, False),
        ({"stream": False}, False, False),
    ],
)
def test_parse_chat_stream_options(
    extra: dict[str, Any], stream: bool, include_usage: bool
) -> None:
    body = chat({"messages": [USER], **extra})
    assert (body.stream, body.include_usage) == (stream, include_usage)
