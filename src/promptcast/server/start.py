"""A stream start, decided once: the request's head and body in, a plan (or the reason not) out.

Both doors use it: the ASGI routes (`routes/streams.py`) and, under `promptcast
serve`, the door below ASGI (`door.py`), so a start is judged the same way
whichever serves it. What follows the plan is `streaming.serve` for both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from promptcast.errors import InvalidField, PromptcastError
from promptcast.providers.base import ChatRequest, ChunkStream
from promptcast.relay.relay import Limits, Upstream
from promptcast.server.http import check_json_type
from promptcast.server.records import Body
from promptcast.server.routes.templates import resolve
from promptcast.server.runtime import Runtime
from promptcast.service.optimizer_models import optimize_body, split_name, with_sampling
from promptcast.service.prompts import Mode
from promptcast.service.schemas import (
    ChatCompletionBody,
    OptimizeRequest,
    parse_chat,
    parse_json,
    parse_optimize,
)


class Route(enum.Enum):
    """The kinds of stream start, by what answers them."""

    GATEWAY = "gateway"  # the browser's endpoint: relays the model service's stream
    MODEL_SERVICE = "model_service"  # this process's model service, same body
    CHAT = "chat"  # OpenAI's chat completions


# Every path that starts a stream: the route table (app.py) and the door take them from here.
START_ROUTES: dict[str, Route] = {
    "/optimize-stream": Route.GATEWAY,
    "/prod-api/optimize-stream": Route.GATEWAY,  # the path the original front end posts to
    "/prompt/optimize-prompt": Route.MODEL_SERVICE,
    "/v1/chat/completions": Route.CHAT,
}


class Kind(enum.Enum):
    STREAM = "stream"  # relayed straight to this client
    RESUMABLE = "resumable"  # detached, kept in the streams store, followed
    ONCE = "once"  # one JSON answer (`"stream": false`)


@dataclass(slots=True)
class Head:
    """What a start needs of the request's head."""

    content_type: str | None
    idempotency_key: str | None = None
    # Who asks, as the key middleware names it (`promptcast.client`): their templates.
    client: str | None = None


@dataclass(slots=True)
class Start:
    """A stream start, understood: what to open, and how to name it in logs and metrics."""

    kind: Kind
    model: str
    mode: str  # the rewrite's mode, or "chat"
    request_id: str
    # Opens the upstream (STREAM, RESUMABLE); raises a `PromptcastError` for
    # anything known before the first byte.
    open: Callable[[], Coroutine[Any, Any, Upstream]]
    # ONCE: opens the chunk stream to collect into one answer.
    once: Callable[[], Coroutine[Any, Any, ChunkStream]] | None = None
    openai_errors: bool = False  # mid-stream errors in OpenAI's shape (`/v1`)
    label: str = ""  # the model errors are counted under: as the client named it
    idempotency_key: str | None = None
    body: Body | None = None  # what a run record keeps
    record_kind: str | None = None  # the run record's kind when not the route's ("try")
    limits: Limits | None = None  # its own limits (an evaluation's are longer), else the settings'


class NotStarted(Exception):
    """A start refused: the error for the client, and the model name it is counted under."""

    def __init__(self, error: PromptcastError, label: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.label = label


def plan(route: Route, head: Head, body: bytes | bytearray, rt: Runtime,
         request_id: str) -> Start:
    """Judge a stream start; raises `NotStarted` with the client's error when it is refused."""
    label = ""
    try:
        check_json_type(head.content_type)
        data = parse_json(body)
        if route is Route.CHAT:
            label = str(data.get("model") or "")
            return _chat(data, rt, request_id, label)
        s = rt.settings
        optimize = parse_optimize(data, default_model=s.models.default,
                                  max_prompt_chars=s.max_prompt_chars,
                                  max_opening_chars=s.max_opening_chars)
        label = optimize.model
        return _optimize(route, optimize, head, rt, request_id)
    except PromptcastError as exc:
        raise NotStarted(exc, label) from None


def _optimize(route: Route, body: OptimizeRequest, head: Head, rt: Runtime,
              request_id: str) -> Start:
    gateway = route is Route.GATEWAY

    async def resolved() -> OptimizeRequest:
        # A template's text is found (maybe in the database) as part of opening.
        return await resolve(rt, head.client, body) if body.template else body

    if not body.stream:
        if gateway:
            raise InvalidField(
                "`stream` must be true on /optimize-stream; for one JSON answer, "
                "POST /prompt/optimize-prompt with \"stream\": false",
                field="stream",
            )

        async def once() -> ChunkStream:
            return await rt.service.optimize(await resolved(), request_id)

        return Start(Kind.ONCE, body.model, body.mode, request_id, once, once=once,
                     label=body.model, body=body)
    # Only the gateway's streams are resumable: elsewhere (or empty) the header means nothing.
    key = _idempotency_key(head.idempotency_key) if gateway and head.idempotency_key else None
    source = rt.gateway if gateway else rt.local_source

    async def with_template() -> Upstream:
        return await source.open(await resolved(), request_id)

    def opening() -> Coroutine[Any, Any, Upstream]:
        # Without a template, no coroutine of ours around the source's: once a stream.
        return with_template() if body.template else source.open(body, request_id)

    kind = Kind.RESUMABLE if gateway and (body.resumable or key) else Kind.STREAM
    return Start(kind, body.model, body.mode, request_id, opening, label=body.model,
                 idempotency_key=key, body=body)


def _chat(data: dict[str, Any], rt: Runtime, request_id: str, label: str) -> Start:
    body = parse_chat(data, default_model=rt.settings.models.default)
    optimizer = split_name(body.request.model, rt.settings.models)
    if optimizer is not None:
        return _optimizer(data, body, optimizer, rt, request_id, label)
    chat: ChatRequest = replace(body.request, request_id=request_id,
                                include_usage=body.include_usage or not body.stream)

    def opening() -> Coroutine[Any, Any, ChunkStream]:
        return rt.service.chat(chat)

    return Start(Kind.STREAM if body.stream else Kind.ONCE, chat.model, "chat", request_id,
                 opening, once=opening, openai_errors=True, label=label, body=chat,
                 record_kind=body.run_kind)


def _optimizer(data: dict[str, Any], body: ChatCompletionBody, optimizer: tuple[Mode, str],
               rt: Runtime, request_id: str, label: str) -> Start:
    """A chat completion to `promptcast-<mode>/<model>`: the last user message, rewritten."""
    mode, model = optimizer
    s = rt.settings
    rewrite = optimize_body(data, body, mode, model, max_prompt_chars=s.max_prompt_chars,
                            max_opening_chars=s.max_opening_chars)
    chat = with_sampling(rt.service.chat_request(rewrite, request_id), body)

    def opening() -> Coroutine[Any, Any, ChunkStream]:
        return rt.service.chat(chat)

    return Start(Kind.STREAM if body.stream else Kind.ONCE, model, mode.value, request_id,
                 opening, once=opening, openai_errors=True, label=label, body=rewrite)


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise InvalidField("Idempotency-Key must be 1 to 200 printable ASCII characters",
                           field="Idempotency-Key")
    return value
