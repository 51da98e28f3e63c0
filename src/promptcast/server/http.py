"""What every route needs from a request: the runtime, its id, a JSON body; errors as responses."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from promptcast import ids
from promptcast.errors import PayloadTooLarge, PromptcastError, UnsupportedMediaType
from promptcast.ops.logs import request_id_var
from promptcast.server.runtime import Runtime
from promptcast.service.schemas import parse_json


def error_response(exc: PromptcastError, request_id: str | None = None) -> JSONResponse:
    """`exc` as its JSON error body and status, with the request id."""
    headers = dict(exc.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(exc.body(), status_code=exc.http_status, headers=headers)


def runtime_of(request: Request) -> Runtime:
    """The shared resources the app opened at start-up."""
    # The lifespan's state dict itself: `request.state` wraps it anew per request.
    runtime: Runtime = request.scope["state"]["runtime"]
    return runtime


def request_id_of(request: Request) -> str:
    """This request's id: the one its middleware set, or a new one."""
    return request_id_var.get() or ids.request_id()


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object body, refused early when it is not JSON or too large."""
    check_json_type(request.headers.get("content-type"))
    return parse_json(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused early (`PayloadTooLarge`) when it is over `limit` bytes."""
    too_large = PayloadTooLarge(f"the request body is larger than the {limit}-byte limit")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    # Straight from `receive`: most bodies come in one message.
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise too_large
        if not message.get("more_body", False):
            return b"".join((*parts, part)) if parts else part
        parts.append(part)


def check_json_type(content_type: str | None) -> None:
    """Refuse (415) a body whose `Content-Type` is not JSON; none at all is taken as JSON."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json, not {ctype}")
