"""Where a gateway's events come from: the model service in-process, or one over HTTP.

Both yield `sse.Event`s ending with `data: [DONE]` (or an upstream's own
`event: error`/`event: timeout` frame), and both raise a `PromptcastError`
from `open()` for anything known before the first byte, so the client sees
the same bytes whichever is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, cast

import orjson

from promptcast.errors import PromptcastError, SSEProtocolError, UpstreamError
from promptcast.providers import ChatChunk, ChunkStream, PushChunks
from promptcast.redact import safe_url
from promptcast.service.model_service import ModelService
from promptcast.service.schemas import OptimizeRequest
from promptcast.wire.sse import Decoder, Event, Run
from promptcast.wire.transport import HTTPClientError, Response, Transport

DONE = Event(data="[DONE]")


class EventStream(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


class EventListener(Protocol):
    """Takes a pushed stream's events inside the upstream's read callback."""

    def event(self, event: Event) -> None: ...

    def data(self, payload: bytes) -> None:
        """`event()` for a plain one-line message event, as its (UTF-8) bytes."""

    def plain(self, run: Run) -> None:
        """`data()` for each event of `run`: plain events as they came (`Decoder.feed_block`)."""

    def flush(self) -> None:
        """The events of one upstream read were all handed over.

        Also called for reads that end after the stream did, until it is closed.
        """

    def end(self, error: PromptcastError | None) -> None:
        """The upstream ended (None: without a terminal event) or failed."""


class PushEvents(Protocol):
    """An event stream that can also push its events (see `direct.py` for why)."""

    def can_push(self) -> bool: ...

    def push(self, listener: EventListener) -> None:
        """Deliver every event to `listener` from now on, the buffered ones first."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None:
        """Stop: no more events; the upstream connection is released or closed."""


class _Closed:
    """The listener of a stream not pushing (yet, or any more): takes nothing."""

    def event(self, event: Event) -> None:
        pass

    def data(self, payload: bytes) -> None:
        pass

    def plain(self, run: Run) -> None:
        pass

    def flush(self) -> None:
        pass

    def end(self, error: PromptcastError | None) -> None:
        pass


_CLOSED = _Closed()


class Source(Protocol):
    async def open(self, request: OptimizeRequest, request_id: str | None) -> EventStream: ...

    async def aclose(self) -> None: ...


class ChunkEvents:
    """A provider's chunk stream as SSE events, with `[DONE]` once it completed."""

    __slots__ = ("_chunks", "_include_usage", "_listener", "flush", "passthrough",
                 "passthrough_run")

    def __init__(self, chunks: ChunkStream, *, include_usage: bool = True) -> None:
        self._chunks = chunks
        self._include_usage = include_usage
        self._listener: EventListener = _CLOSED
        # The listener's own, once pushing: the provider calls them without a hop here.
        self.passthrough: Callable[[bytes], None] = _CLOSED.data
        self.passthrough_run: Callable[[Run], None] = _CLOSED.plain
        self.flush: Callable[[], None] = _CLOSED.flush

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for chunk in self._chunks:
            if chunk.usage is not None and not self._include_usage and not (
                chunk.content or chunk.finish_reason
            ):
                continue
            yield Event(data=chunk.data)
        yield DONE

    async def aclose(self) -> None:
        await self._chunks.aclose()

    # -- push mode: the provider's chunks arrive from its read callback ----------

    def can_push(self) -> bool:
        return hasattr(self._chunks, "push")

    @property
    def _pusher(self) -> PushChunks:
        return cast(PushChunks, self._chunks)

    def push(self, listener: EventListener) -> None:
        self._listener = listener
        self.passthrough = listener.data
        self.passthrough_run = listener.plain
        self.flush = listener.flush
        self._pusher.push(self)

    def chunk(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None and not self._include_usage and not (
            chunk.content or chunk.finish_reason
        ):
            return
        self._listener.event(Event(data=chunk.data))

    def end(self, error: PromptcastError | None) -> None:
        if error is None:
            self._listener.event(DONE)
        else:
            self._listener.end(error)

    def pause(self) -> None:
        self._pusher.pause()

    def resume(self) -> None:
        self._pusher.resume()

    def close(self) -> None:
        # The relay holds these events and they held the relay's methods: let
        # go, so the pair is freed without the cyclic collector.
        self._listener = _CLOSED
        self.passthrough = _CLOSED.data
        self.passthrough_run = _CLOSED.plain
        self.flush = _CLOSED.flush
        self._pusher.close()


class InProcessSource:
    """The model service in this process."""

    def __init__(self, service: ModelService) -> None:
        self._service = service

    async def open(self, request: OptimizeRequest, request_id: str | None) -> EventStream:
        return ChunkEvents(await self._service.optimize(request, request_id))

    async def aclose(self) -> None:
        """Nothing of its own to close: the service belongs to the app."""


class HttpSource:
    """Another promptcast's (or a look-alike's) `POST /prompt/optimize-prompt`."""

    def __init__(self, client: Transport, base_url: str, *, max_event_bytes: int) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/prompt/optimize-prompt"
        self._where = safe_url(base_url)
        self._max_event_bytes = max_event_bytes

    async def open(self, request: OptimizeRequest, request_id: str | None) -> EventStream:
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
    __slots__ = ("_decoder", "_listener", "_response", "_where")

    def __init__(self, response: Response, where: str, max_event_bytes: int) -> None:
        self._response = response
        self._where = where
        self._decoder = Decoder(max_line_bytes=max_event_bytes, max_event_bytes=max_event_bytes,
                                strict_utf8=True)
        self._listener: EventListener = _CLOSED

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            async for raw in self._response:
                for event in self._decoder.feed(raw):
                    yield event
        except HTTPClientError:
            raise UpstreamError(
                f"the model service at {self._where} dropped the connection mid-stream",
                code="upstream_closed",
            ) from None

    async def aclose(self) -> None:
        await self._response.aclose()

    # -- push mode -----------------------------------------------------------------

    def can_push(self) -> bool:
        return True

    def push(self, listener: EventListener) -> None:
        self._listener = listener
        # The end of a read goes straight to the listener: one call less per chunk.
        self._response.deliver(self._on_bodies, self._on_end, listener.flush)

    def _on_bodies(self, bodies: list[bytes]) -> None:
        """One upstream read's body chunks: one event (as the model writes), or many at once."""
        decoder = self._decoder
        if len(bodies) == 1:
            payload = decoder.simple_event(bodies[0])
            if payload is not None:
                self._listener.data(payload)
                return
        try:
            before, run, after, error = decoder.feed_block(bodies)
        except SSEProtocolError as exc:
            before, run, after, error = [], None, [], exc
        listener = self._listener
        for event in before:
            listener.event(event)
        if run is not None:
            listener.plain(run)
        for event in after:
            listener.event(event)
        if error is not None:
            self._response.close()
            self._listener.end(error)

    def _on_end(self, error: HTTPClientError | None) -> None:
        if error is None:
            self._listener.end(None)
        else:
            self._listener.end(UpstreamError(
                f"the model service at {self._where} dropped the connection mid-stream",
                code="upstream_closed",
            ))

    def pause(self) -> None:
        self._response.pause_reading()

    def resume(self) -> None:
        self._response.resume_reading()

    def close(self) -> None:
        self._listener = _CLOSED
        self._response.close()
