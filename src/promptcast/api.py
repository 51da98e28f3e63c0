"""HTTP routes: the only module that knows about requests, statuses and headers."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from .errors import (
    InvalidField,
    PayloadTooLarge,
    PromptcastError,
    StreamTimeout,
    UnsupportedMediaType,
)
from .logs import log_stream
from .providers import ProviderRegistry
from .redact import Redactor
from .relay import Limits, Relay
from .schemas import OptimizeRequest, parse_chat, parse_json, parse_optimize
from .service import ModelService, collect
from .settings import Settings
from .source import ChunkEvents, EventStream, HttpSource, InProcessSource, Source

STATIC = Path(__file__).parent / "static"

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@dataclass(slots=True)
class Runtime:
    """What the routes share, opened in `lifespan` and reached through `request.state`."""

    settings: Settings
    client: httpx.AsyncClient
    service: ModelService
    gateway: Source
    local_source: Source
    limits: Limits


class SSEResponse(Response):
    """A 200 event stream driven by a `Relay`; logs one line when it ends."""

    def __init__(self, relay: Relay, headers: dict[str, str], log_fields: dict[str, Any]) -> None:
        super().__init__(headers={**SSE_HEADERS, **headers})
        self._relay = relay
        self._log_fields = log_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def write(body: bytes) -> None:
            await send({"type": "http.response.body", "body": body, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        stats = await self._relay.run(write, disconnected)
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        log_stream(stats, **self._log_fields)

    def init_headers(self, headers: Any = None) -> None:
        # Starlette would add Content-Length; an event stream has none.
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]


def _error_response(exc: PromptcastError, request_id: str | None = None) -> JSONResponse:
    headers = dict(exc.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(exc.body(), status_code=exc.http_status, headers=headers)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return secrets.token_hex(8)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object body, refused early when it is not JSON or too large."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json, not {ctype}"
        )
    too_large = PayloadTooLarge(f"the request body is larger than the {limit}-byte limit")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return parse_json(bytes(body))


def _stream_response(
    rt: Runtime, events: EventStream, request_id: str, log_fields: dict[str, Any]
) -> SSEResponse:
    stream_id = secrets.token_urlsafe(9)
    relay = Relay(events, rt.limits, stream_id)
    headers = {"X-Stream-Id": stream_id, "X-Request-ID": request_id}
    return SSEResponse(relay, headers, {**log_fields, "request_id": request_id})


async def _optimize(request: Request, *, gateway: bool) -> Response:
    rt = _runtime(request)
    request_id = _request_id(request)
    try:
        data = await read_json(request, rt.settings.max_body_bytes)
        body = _parse_optimize(rt, data)
        if not body.stream:
            if gateway:
                raise InvalidField(
                    "`stream` must be true on /optimize-stream; for one JSON answer, "
                    "POST /prompt/optimize-prompt with \"stream\": false",
                    field="stream",
                )
            return await _optimize_once(rt, body, request_id)
        source = rt.gateway if gateway else rt.local_source
        events = await source.open(body, request_id)
    except PromptcastError as exc:
        return _error_response(exc, request_id)
    return _stream_response(rt, events, request_id, {"model": body.model, "mode": body.mode.value})


def _parse_optimize(rt: Runtime, data: dict[str, Any]) -> OptimizeRequest:
    s = rt.settings
    return parse_optimize(
        data,
        default_model=s.models.default,
        max_prompt_chars=s.max_prompt_chars,
        max_opening_chars=s.max_opening_chars,
    )


async def _optimize_once(rt: Runtime, body: OptimizeRequest, request_id: str) -> Response:
    stream = await rt.service.optimize(body, request_id)
    async with _total_timeout(rt):
        result = await collect(stream, body.model)
    return JSONResponse(result, headers={"X-Request-ID": request_id})


@contextlib.asynccontextmanager
async def _total_timeout(rt: Runtime) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(rt.limits.total_timeout):
            yield
    except TimeoutError:
        raise StreamTimeout(
            f"the completion took longer than {rt.limits.total_timeout:g} s"
        ) from None


async def optimize_stream(request: Request) -> Response:
    """POST /optimize-stream: the gateway."""
    return await _optimize(request, gateway=True)


async def optimize_prompt(request: Request) -> Response:
    """POST /prompt/optimize-prompt: the model service."""
    return await _optimize(request, gateway=False)


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions, OpenAI-compatible."""
    rt = _runtime(request)
    request_id = _request_id(request)
    try:
        data = await read_json(request, rt.settings.max_body_bytes)
        body = parse_chat(data, default_model=rt.settings.models.default)
        chat = replace(body.request, request_id=request_id)
        stream = await rt.service.chat(chat)
        if not body.stream:
            async with _total_timeout(rt):
                result = await collect(stream, chat.model)
            return JSONResponse(result, headers={"X-Request-ID": request_id})
    except PromptcastError as exc:
        return _error_response(exc, request_id)
    events = ChunkEvents(stream, include_usage=body.include_usage)
    return _stream_response(rt, events, request_id, {"model": chat.model, "mode": "chat"})


async def list_models(request: Request) -> Response:
    """GET /v1/models: every configured model, with whether it is usable and why not."""
    models = _runtime(request).settings.models
    return JSONResponse({
        "object": "list",
        "data": [
            {
                "id": spec.name,
                "object": "model",
                "created": 0,
                "owned_by": spec.provider,
                "description": spec.description,
                "available": spec.available,
                "unavailable_reason": spec.unavailable_reason,
                "default": spec.name == models.default,
            }
            for spec in models
        ],
    })


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP,
                                                        "X-Content-Type-Options": "nosniff"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                        status_code=exc.status_code, headers=exc.headers)


async def _promptcast_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PromptcastError)
    return _error_response(exc)


def create_app(settings: Settings) -> Starlette:
    """The ASGI app; HTTP clients and providers are opened in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.connect_timeout, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            trust_env=False,
        )
        redactor = Redactor(settings.models.secrets())
        registry = ProviderRegistry(settings, client, redactor)
        service = ModelService(settings.models, registry)
        local: Source = InProcessSource(service)
        gateway: Source = (
            HttpSource(client, settings.upstream_url, max_event_bytes=settings.max_event_bytes)
            if settings.upstream_url else local
        )
        limits = Limits(
            first_token_timeout=settings.first_token_timeout,
            idle_timeout=settings.idle_timeout,
            total_timeout=settings.total_timeout,
            heartbeat_interval=settings.heartbeat_interval,
        )
        runtime = Runtime(settings, client, service, gateway, local, limits)
        try:
            yield {"runtime": runtime}
        finally:
            await registry.aclose()
            await client.aclose()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/optimize-stream", optimize_stream, methods=["POST"]),
        Route("/prod-api/optimize-stream", optimize_stream, methods=["POST"]),
        Route("/prompt/optimize-prompt", optimize_prompt, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, PromptcastError: _promptcast_error},
    )
