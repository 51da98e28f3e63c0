"""Where a gateway's events come from: the model service in-process, or one over HTTP.

Both push `sse` events ending with `data: [DONE]` (or an upstream's own
`event: error`/`event: timeout` frame), and both raise a `PromptcastError`
from `open()` for anything known before the first byte, so the client sees
the same bytes whichever is configured.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from promptcast.errors import PromptcastError, SSEProtocolError, UpstreamError
from promptcast.redact import safe_url
from promptcast.relay.relay import Upstream
from promptcast.service.model_service import ModelService
from promptcast.service.schemas import OptimizeRequest
from promptcast.wire.sse import Decoder, EventListener
from promptcast.wire.transport import HTTPClientError, Response, Transport


class Source(Protocol):
    """Where a gateway's streams come from."""

    async def open(self, request: OptimizeRequest, request_id: str | None) -> Upstream:
        """Start one; raises a `PromptcastError` for anything known before its first byte."""

    async def aclose(self) -> None: ...


class InProcessSource:
    """The model service in this process."""

    def __init__(self, service: ModelService) -> None:
        self._service = service

    async def open(self, request: OptimizeRequest, request_id: str | None) -> Upstream:
        # A provider's chunk stream pushes the events the relay takes.
        return await self._service.optimize(request, request_id)

    async def aclose(self) -> None:
        """Nothing of its own to close: the service belongs to the app."""


class HttpSource:
    """Another promptcast's (or a look-alike's) `POST /prompt/optimize-prompt`."""

    def __init__(self, client: Transport, base_url: str, *, max_event_bytes: int) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/prompt/optimize-prompt"
        self._where = safe_url(base_url)
        self._max_event_bytes = max_event_bytes

    async def open(self, request: OptimizeRequest, request_id: str | None) -> Upstream:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity",
                   "Content-Type": "application/json"}
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = await self._client.request(
                "POST", self._url, headers=headers, body=orjson.dumps(request.as_json())
            )
        except HTTPClientError as exc:
            raise UpstreamError(
                f"cannot reach the model service at {self._where}: {exc}",
                code="upstream_unreachable",
            ) from None
        try:
            if response.status != 200:
                raise await _remote_error(response, self._where)
            ctype = response.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise UpstreamError(
                    f"the model service at {self._where} answered 200 with "
                    f"{ctype or 'no content type'} instead of an event stream",
                    code="bad_upstream_stream",
                )
        except BaseException:
            await response.aclose()
            raise
        return _HttpEvents(response, self._where, self._max_event_bytes)

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


class RemoteError(PromptcastError):
    """An error another promptcast reported: its status, code and field, passed on."""

    def __init__(self, status: int, code: str, message: str, field: str | None,
                 headers: dict[str, str]) -> None:
        super().__init__(message, field=field, headers=headers)
        self._status = status
        self._code = code

    @property
    def error_code(self) -> str:
        return self._code

    @property
    def http_status(self) -> int:
        return self._status


async def _remote_error(response: Response, where: str) -> PromptcastError:
    try:
        body = await response.read(64 * 1024)
    except HTTPClientError:
        body = b""
    headers = {k: response.headers[k] for k in ("retry-after",) if k in response.headers}
    try:
        error = orjson.loads(body)["error"]
        return RemoteError(response.status, str(error["code"]), str(error["message"]),
                           error.get("field"), headers)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return UpstreamError(
            f"the model service at {where} answered {response.status}",
            upstream_status=response.status, headers=headers,
        )


class _HttpEvents:
    """Another promptcast's event stream, pushed from its connection's reads."""

    __slots__ = ("_decoder", "_listener", "_response", "_where")

    def __init__(self, response: Response, where: str, max_event_bytes: int) -> None:
        self._response = response
        self._where = where
        self._decoder = Decoder(max_line_bytes=max_event_bytes, max_event_bytes=max_event_bytes,
                                strict_utf8=True)
        self._listener: EventListener | None = None

    def push(self, listener: EventListener) -> None:
        self._listener = listener
        # The end of a read goes straight to the listener: one call less per chunk.
        self._response.deliver(self._on_bodies, self._on_end, listener.flush)

    def _on_bodies(self, bodies: list[bytes]) -> None:
        """One upstream read's body chunks: one event (as the model writes), or many at once."""
        listener = self._listener
        if listener is None:
            return
        decoder = self._decoder
        if len(bodies) == 1:
            payload = decoder.simple_event(bodies[0])
            if payload is not None:
                listener.data(payload)
                return
        try:
            before, run, after, error = decoder.feed_block(bodies)
        except SSEProtocolError as exc:
            before, run, after, error = [], None, [], exc
        for event in before:
            listener.event(event)
        if run is not None:
            listener.plain(run)
        for event in after:
            listener.event(event)
        if error is not None:
            self._response.close()
            listener.end(error)

    def _on_end(self, error: HTTPClientError | None) -> None:
        listener = self._listener
        if listener is None:
            return
        if error is None:
            listener.end(None)
        else:
            listener.end(UpstreamError(
                f"the model service at {self._where} dropped the connection mid-stream",
                code="upstream_closed",
            ))

    def pause(self) -> None:
        self._response.pause_reading()

    def resume(self) -> None:
        self._response.resume_reading()

    async def aclose(self) -> None:
        self._listener = None
        self._response.close()
