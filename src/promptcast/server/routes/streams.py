"""The routes that start streams: the gateway, the model service, OpenAI's chat completions.

Each reads the body, judges it with `start.plan` (as the door below ASGI
does), and serves it: relayed (`streaming.serve`), detached and resumable
(`routes/resumable.py`), or collected into one JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptcast.errors import (
    PayloadTooLarge,
    PromptcastError,
    StreamTimeout,
    UnsupportedMediaType,
)
from promptcast.server import records
from promptcast.server.http import (
    check_json_type,
    error_response,
    read_body,
    request_id_of,
    runtime_of,
)
from promptcast.server.routes.resumable import start_resumable
from promptcast.server.runtime import Runtime
from promptcast.server.start import START_ROUTES, Head, Kind, NotStarted, Start, plan
from promptcast.server.streaming import StartResponse, opened_for
from promptcast.service.model_service import collect


async def start_stream(request: Request) -> Response:
    """POST to a stream route (`start.START_ROUTES`): relay, resume or answer once."""
    rt = runtime_of(request)
    request_id = request_id_of(request)
    try:
        try:
            # What the body is, before reading it (415 before 413), as the door does.
            check_json_type(request.headers.get("content-type"))
            body = await read_body(request, rt.settings.max_body_bytes)
        except (PayloadTooLarge, UnsupportedMediaType) as exc:
            raise NotStarted(exc, "") from None
        start = plan(START_ROUTES[request.url.path], Head(
            request.headers.get("content-type"), request.headers.get("idempotency-key"),
            records.client_of(request.scope)), body, rt, request_id)
        if start.kind is Kind.STREAM:
            return StartResponse(rt, start)
        if start.kind is Kind.RESUMABLE:
            return await start_resumable(request, rt, start)
        return await _once(request, rt, start)
    except NotStarted as refused:
        rt.metrics.error(refused.label, refused.error.error_code)
        return error_response(refused.error, request_id)


async def _once(request: Request, rt: Runtime, start: Start) -> Response:
    """One `chat.completion` JSON answer (`"stream": false`)."""
    assert start.once is not None
    try:
        if start.openai_errors:  # chat completions wait for their first token as streams do
            stream = await opened_for(request.scope, request.receive, start.once(),
                                      rt.settings.first_token_timeout)
        else:
            stream = await start.once()
        async with _total_timeout(rt):
            result = await collect(stream, start.model)
    except PromptcastError as exc:
        raise NotStarted(exc, start.label) from None
    return JSONResponse(result, headers={"X-Request-ID": start.request_id})


@contextlib.asynccontextmanager
async def _total_timeout(rt: Runtime) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(rt.limits.total_timeout):
            yield
    except TimeoutError:
        raise StreamTimeout(
            f"the completion took longer than {rt.limits.total_timeout:g} s"
        ) from None
