"""Request bodies: parsed from JSON, validated with errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from promptcast.errors import InvalidField, InvalidJSON
from promptcast.providers.base import ChatRequest, Message
from promptcast.service.prompts import MODE_ALIASES, Mode

_MODE_CHOICES = ", ".join(repr(k) for k in MODE_ALIASES)
_ROLES = ("system", "user", "assistant", "developer", "tool")


def parse_json(body: bytes | bytearray) -> dict[str, Any]:
    """Decode a JSON object body, or raise a 400 that says what is wrong."""
    if not body.strip():
        raise InvalidJSON("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidJSON(f"the request body must be a JSON object, not {type(data).__name__}")
    return data


# Far above any model's context, and within the 64-bit integers upstream JSON takes.
MAX_TOKENS_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    prompt: str
    mode: Mode
    model: str
    opening: str | None = None
    target_chars: int | None = None
    stream: bool = True
    resumable: bool = False
    previous: str | None = None
    feedback: str | None = None
    template: str | None = None       # a template's name (issue 20)
    template_text: str | None = None  # its text, once the route has found it
    template_language: str | None = None  # and the language it is worded in

    def as_json(self) -> dict[str, Any]:
        """The body to forward to an upstream model service."""
        # `mode` is a StrEnum: orjson writes its value.
        body: dict[str, Any] = {"prompt": self.prompt, "type": self.mode,
                                "model": self.model, "stream": self.stream}
        if self.opening is not None:
            body["opening"] = self.opening
        if self.target_chars is not None:
            body["target_chars"] = self.target_chars
        if self.previous is not None and self.feedback is not None:
            body["previous"] = self.previous
            body["feedback"] = self.feedback
        if self.template is not None:
            body["template"] = self.template
        return body


def _whole(value: Any) -> Any:
    """`3.0` as `3`: JSON does not tell integers from integral floats, and neither do we."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _optional_str(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(f"`{name}` must be a string or null", field=name)
    if len(value) > limit:
        raise InvalidField(
            f"`{name}` is {len(value)} characters; the limit is {limit}", field=name
        )
    return value or None


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise InvalidField(f"`{name}` must be true or false", field=name)
    return value


def parse_optimize(
    data: dict[str, Any], *, default_model: str, max_prompt_chars: int, max_opening_chars: int
) -> OptimizeRequest:
    """Validate an /optimize-stream or /prompt/optimize-prompt body and fill defaults."""
    prompt = data.get("prompt")
    if prompt is None:
        raise InvalidField("`prompt` is required: the text to rewrite", field="prompt")
    if not isinstance(prompt, str):
        raise InvalidField("`prompt` must be a string", field="prompt")
    if not prompt.strip():
        raise InvalidField("`prompt` is empty: give the text to rewrite", field="prompt")
    if len(prompt) > max_prompt_chars:
        raise InvalidField(
            f"`prompt` is {len(prompt)} characters; the limit is {max_prompt_chars}",
            field="prompt",
        )
    raw_type = data.get("type", "optimize")
    mode = MODE_ALIASES.get(raw_type) if isinstance(raw_type, str) else None
    if mode is None:
        raise InvalidField(
            f"`type` must be one of {_MODE_CHOICES}, not {raw_type!r}", field="type"
        )
    model = data.get("model")
    if model is None or model == "":
        model = default_model
    elif not isinstance(model, str):
        raise InvalidField("`model` must be a string", field="model")
    target = _whole(data.get("target_chars"))
    if target is not None:
        if mode is Mode.OPTIMIZE:
            raise InvalidField(
                "`target_chars` applies to type 'expand' or 'shorten' only", field="target_chars"
            )
        if not isinstance(target, int) or isinstance(target, bool) or not 1 <= target <= 100_000:
            raise InvalidField(
                "`target_chars` must be an integer from 1 to 100000", field="target_chars"
            )
    opening = _optional_str(data, "opening", max_opening_chars)
    previous, feedback = _revision(data, max_prompt_chars, max_opening_chars)
    return OptimizeRequest(
        prompt=prompt,
        mode=mode,
        model=model,
        opening=opening,
        target_chars=target,
        stream=_bool(data, "stream", True),
        resumable=_bool(data, "resumable", False),
        previous=previous,
        feedback=feedback,
        template=_template(data),
    )


def _revision(data: dict[str, Any], max_previous: int,
              max_feedback: int) -> tuple[str | None, str | None]:
    """`previous` and `feedback`: both (an earlier rewrite to revise, and how) or neither."""
    previous = _optional_str(data, "previous", max_previous)
    feedback = _optional_str(data, "feedback", max_feedback)
    if previous is not None and not previous.strip():
        raise InvalidField("`previous` is blank: give the rewrite to revise", field="previous")
    if feedback is not None and not feedback.strip():
        raise InvalidField("`feedback` is blank: say what to change", field="feedback")
    if previous is not None and feedback is None:
        raise InvalidField(
            "`feedback` is required with `previous`: say what to change in the rewrite",
            field="feedback",
        )
    if feedback is not None and previous is None:
        raise InvalidField(
            "`previous` is required with `feedback`: give the rewrite to revise",
            field="previous",
        )
    return previous, feedback


def _template(data: dict[str, Any]) -> str | None:
    """`template`: a template's name (issue 20), found by the route for the caller."""
    name = data.get("template")
    if name is None:
        return None
    if (not isinstance(name, str) or not 1 <= len(name) <= 100
            or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name)):
        raise InvalidField("`template` must be a template's name: 1 to 100 letters, digits, "
                           "'.', '-' or '_'", field="template")
    return name


@dataclass(frozen=True, slots=True)
class ChatCompletionBody:
    request: ChatRequest
    stream: bool
    include_usage: bool
    run_kind: str | None = None  # what the library's run record calls it (`_run_kind`)


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidField(
                    f"`messages[{index}].content` parts must be {{\"type\": \"text\"}} parts",
                    field=f"messages[{index}].content",
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidField(
        f"`messages[{index}].content` must be a string or a list of text parts",
        field=f"messages[{index}].content",
    )


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidField(f"`{name}` must be a number from {low:g} to {high:g}", field=name)
    return float(value)


# OpenAI's `metadata` (string tags on a completion) may say which kind of run this is:
# the page's try columns send {"promptcast_kind": "try"}, so runs tell them from chats.
RUN_KIND_TAG = "promptcast_kind"
RUN_KINDS = ("chat", "try")


def _run_kind(data: dict[str, Any]) -> str | None:
    metadata = data.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidField("`metadata` must be an object of string tags", field="metadata")
    kind = metadata.get(RUN_KIND_TAG)
    if kind is not None and kind not in RUN_KINDS:
        field = f"metadata.{RUN_KIND_TAG}"
        raise InvalidField(f"`{field}` must be one of {', '.join(RUN_KINDS)}", field=field)
    return kind


def parse_chat(data: dict[str, Any], *, default_model: str) -> ChatCompletionBody:
    """Validate an OpenAI chat completions body."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidField("`messages` must be a non-empty list", field="messages")
    parsed = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidField(f"`messages[{i}]` must be an object", field=f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidField(
                f"`messages[{i}].role` must be one of {', '.join(_ROLES)}",
                field=f"messages[{i}].role",
            )
        parsed.append(Message(role, _content_text(message.get("content"), i)))
    model = data.get("model") or default_model
    if not isinstance(model, str):
        raise InvalidField("`model` must be a string", field="model")
    limit = "max_tokens" if data.get("max_completion_tokens") is None else "max_completion_tokens"
    max_tokens = _whole(data.get(limit))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise InvalidField(
            f"`{limit}` must be a positive integer of at most {MAX_TOKENS_LIMIT}", field=limit)
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        raise InvalidField("`stop` must be a string or a list of strings", field="stop")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidField("`stream_options` must be an object", field="stream_options")
    return ChatCompletionBody(
        request=ChatRequest(
            model=model,
            messages=tuple(parsed),
            max_tokens=max_tokens,
            temperature=_number(data, "temperature", 0, 2),
            top_p=_number(data, "top_p", 0, 1),
            stop=tuple(stop or ()),
        ),
        stream=_bool(data, "stream", False),
        include_usage=bool(options.get("include_usage", False)),
        run_kind=_run_kind(data),
    )
