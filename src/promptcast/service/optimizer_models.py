"""The optimizer as a model name: `promptcast-optimize/qwen-max` and its expand and shorten twins.

Any OpenAI-compatible client can pick one from `GET /v1/models` and send it a
chat completion: the last user message is the prompt to rewrite, and the
answer is the rewrite, streamed or not, in the usual chunks. `opening` and
`target_chars` may ride along as extra body fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from promptcast.errors import InvalidField
from promptcast.models import ModelSpec, ModelTable
from promptcast.providers.base import ChatRequest
from promptcast.service.prompts import Mode
from promptcast.service.schemas import ChatCompletionBody, OptimizeRequest, parse_optimize

PREFIX = "promptcast-"
_MODES = frozenset(mode.value for mode in Mode)  # the English names only: they are model ids


def optimizer_name(mode: Mode, model: str) -> str:
    """The model name that rewrites prompts in `mode` on `model`."""
    return f"{PREFIX}{mode.value}/{model}"


def split_name(name: str, models: ModelTable) -> tuple[Mode, str] | None:
    """(mode, model) if `name` is an optimizer's name, else None.

    A configured model of that very name stays that model: the operator's table wins.
    """
    if not name.startswith(PREFIX) or name in models:
        return None
    mode, slash, model = name[len(PREFIX):].partition("/")
    if not slash or mode not in _MODES:
        return None
    return Mode(mode), model


def optimizer_specs(models: ModelTable) -> Iterator[tuple[str, Mode, ModelSpec]]:
    """Every optimizer name there is, one per mode for each usable model."""
    for spec in models:
        if spec.available:
            for mode in Mode:
                yield optimizer_name(mode, spec.name), mode, spec


def _last_user_message(body: ChatCompletionBody) -> tuple[int, str]:
    for index in range(len(body.request.messages) - 1, -1, -1):
        if body.request.messages[index].role == "user":
            return index, body.request.messages[index].content
    raise InvalidField(
        "`messages` has no user message: the optimizer rewrites the last user message's "
        "text, so send the prompt to rewrite as {\"role\": \"user\", \"content\": ...}",
        field="messages",
    )


def optimize_body(data: dict[str, Any], body: ChatCompletionBody, mode: Mode, model: str, *,
                  max_prompt_chars: int, max_opening_chars: int) -> OptimizeRequest:
    """The rewrite a chat completion to an optimizer's name asks for, checked like
    /optimize-stream's body (errors name the chat body's fields)."""
    index, prompt = _last_user_message(body)
    field = f"messages[{index}].content"
    if not prompt.strip():
        raise InvalidField(f"`{field}` is empty: give the prompt to rewrite", field=field)
    if len(prompt) > max_prompt_chars:
        raise InvalidField(
            f"`{field}` is {len(prompt)} characters; the limit is {max_prompt_chars}",
            field=field)
    fields = {"prompt": prompt, "type": mode.value, "model": model, "stream": body.stream}
    for name in ("opening", "target_chars"):
        if data.get(name) is not None:
            fields[name] = data[name]
    return parse_optimize(fields, default_model=model, max_prompt_chars=max_prompt_chars,
                          max_opening_chars=max_opening_chars)


def with_sampling(request: ChatRequest, body: ChatCompletionBody) -> ChatRequest:
    """The rewrite's chat request with the client's sampling fields and usage choice kept."""
    chat = body.request
    return replace(request, max_tokens=chat.max_tokens, temperature=chat.temperature,
                   top_p=chat.top_p, stop=chat.stop,
                   include_usage=body.include_usage or not body.stream)
