"""Any OpenAI-compatible chat completions API over HTTP: DashScope, OpenAI, vLLM, Ollama, ..."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from promptcast.errors import PromptcastError, SSEProtocolError, UpstreamError
from promptcast.models import ModelSpec
from promptcast.providers.base import ChatChunk, ChatRequest, relayed
from promptcast.providers.openai_shape import plain_content, plain_head
from promptcast.redact import Redactor, safe_url
from promptcast.wire.sse import DONE, Decoder, Event, EventListener, Run, payload
from promptcast.wire.transport import HTTPClientError, Response, Transport

_ERROR_BODY_LIMIT = 16 * 1024


class OpenAICompatProvider:
    """Streams `POST {base_url}/chat/completions` and yields its chunks untouched."""

    def __init__(
        self,
        spec: ModelSpec,
        client: Transport,
        *,
        redactor: Redactor,
        max_event_bytes: int,
    ) -> None:
        assert spec.base_url is not None
        self.spec = spec
        self._client = client
        self._url = f"{spec.base_url}/chat/completions"
        self._where = safe_url(spec.base_url)
        self._redact = redactor
        self._max_event_bytes = max_event_bytes

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.upstream_model,
            "messages": [m.as_dict() for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        max_tokens = request.max_tokens or self.spec.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    async def stream_chat(self, request: ChatRequest) -> _OpenAIStream:
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        if self.spec.api_key:
            headers["Authorization"] = f"Bearer {self.spec.api_key}"
        if request.request_id:
            headers["X-Request-ID"] = request.request_id
        headers["Content-Type"] = "application/json"
        try:
            response = await self._client.request(
                "POST", self._url, headers=headers, body=orjson.dumps(self._body(request))
            )
        except HTTPClientError as exc:
            raise UpstreamError(
                f"cannot reach the upstream of model {self.spec.name!r} ({self._where}): "
                f"{self._redact(str(exc))}",
                code="upstream_unreachable",
            ) from None
        try:
            await self._check(response)
        except BaseException:
            await response.aclose()
            raise
        return _OpenAIStream(self.spec.name, response, self._redact, self._max_event_bytes,
                             include_usage=request.include_usage)

    async def _check(self, response: Response) -> None:
        if response.status != 200:
            detail = await _error_detail(response)
            headers = {}
            if response.status == 429 and "retry-after" in response.headers:
                headers["Retry-After"] = response.headers["retry-after"]
            raise UpstreamError(
                self._redact(
                    f"the upstream of model {self.spec.name!r} answered "
                    f"{response.status}{': ' + detail if detail else ''}"
                ),
                upstream_status=response.status,
                headers=headers,
            )
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise UpstreamError(
                f"the upstream of model {self.spec.name!r} answered 200 with "
                f"{ctype or 'no content type'} instead of an event stream",
                code="bad_upstream_stream",
            )
        if response.headers.get("content-encoding", "identity") != "identity":
            raise UpstreamError(
                f"the upstream of model {self.spec.name!r} compressed its event stream "
                "although asked not to", code="bad_upstream_stream",
            )

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by its owner."""


async def _error_detail(response: Response) -> str:
    try:
        body = await response.read(_ERROR_BODY_LIMIT)
    except HTTPClientError:
        body = b""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
    return ""


class _OpenAIStream:
    __slots__ = ("_data", "_decoder", "_finished", "_include_usage", "_listener", "_model",
                 "_redact", "_response", "_run")

    def __init__(
        self, model: str, response: Response, redact: Redactor, max_event_bytes: int, *,
        include_usage: bool = True,
    ) -> None:
        self._model = model
        self._response = response
        self._redact = redact
        self._include_usage = include_usage
        self._decoder = Decoder(max_line_bytes=max_event_bytes, max_event_bytes=max_event_bytes,
                                strict_utf8=True)
        self._listener: EventListener | None = None
        # The listener's own methods, looked up once: called per chunk.
        self._data: Callable[[bytes], None] | None = None
        self._run: Callable[[Run], None] | None = None
        self._finished = False

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()
    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        finished = False
        try:
            async for raw in self._response:
                for event in self._decoder.feed(raw):
                    if event.data == "[DONE]":
                        return
                    chunk = self._parse(event.event, event.data)
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
        except HTTPClientError:
            raise UpstreamError(
                f"the upstream of model {self._model!r} dropped the connection mid-stream",
                code="upstream_closed",
            ) from None
        self._decoder.close()
        if not finished:
            raise UpstreamError(
                f"the upstream of model {self._model!r} ended the stream before it was complete",
                code="upstream_closed",
            )

    def _parse(self, kind: str, data: str) -> ChatChunk:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise SSEProtocolError(
                f"the upstream of model {self._model!r} sent data that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise SSEProtocolError(f"the upstream of model {self._model!r} sent a non-object chunk")
        if kind == "error" or "error" in body:
            error = body.get("error", body)
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(
                self._redact(f"the upstream of model {self._model!r} failed: {message}")
            )
        content = ""
        finish = None
        choices = body.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                content = delta["content"]
            finish = choices[0].get("finish_reason")
        usage = body.get("usage")
        return ChatChunk(
            data=data,
            content=content,
            finish_reason=finish if isinstance(finish, str) and finish else None,
            usage=usage if isinstance(usage, dict) else None,
        )

    # -- push mode: events handed on inside the upstream's read callback -----------

    def push(self, listener: EventListener) -> None:
        self._listener = listener
        self._data = listener.data
        self._run = listener.plain
        # The end of a read goes straight to the listener. Reads can still end
        # after the stream did (`[DONE]` does not close the response), until
        # `aclose()`: the listener's flush takes that (`EventListener.flush`).
        self._response.deliver(self._on_bodies, self._on_end, listener.flush)

    def _on_bodies(self, bodies: list[bytes]) -> None:
        """One upstream read's body chunks: one event (as models write), or many at once."""
        data = self._data
        if data is None:
            return
        decoder = self._decoder
        if len(bodies) == 1:
            single = decoder.simple_event(bodies[0])
            if single is not None:
                if plain_content(single):
                    data(single)
                else:
                    self._on_events([Event(single.decode())])
                return
        try:
            before, run, after, error = decoder.feed_block(bodies)
        except SSEProtocolError as exc:
            before, run, after, error = [], None, [], exc
        self._on_events(before)
        if run is not None:
            head, rest = plain_head(run)
            if head is not None and self._run is not None:
                self._run(head)
            # The stream's end, say (its finish and usage chunks): event by event.
            self._on_events([Event(payload(line).decode()) for line in rest])
        self._on_events(after)
        if error is not None:
            self._end(error)

    def _on_events(self, events: list[Event]) -> None:
        try:
            for event in events:
                listener = self._listener
                if listener is None:
                    return  # ended, or closed by the listener
                text = event.data
                encoded = text.encode() if event.event == "message" else b""
                if encoded and plain_content(encoded):
                    assert self._data is not None
                    self._data(encoded)
                elif text == "[DONE]":
                    self._end(None)
                else:
                    chunk = self._parse(event.event, text)
                    self._finished = self._finished or chunk.finish_reason is not None
                    if relayed(chunk, self._include_usage):
                        listener.event(Event(chunk.data))
        except PromptcastError as exc:
            self._end(exc)

    def _on_end(self, error: Exception | None) -> None:
        if error is not None:
            self._end(UpstreamError(
                f"the upstream of model {self._model!r} dropped the connection mid-stream",
                code="upstream_closed",
            ))
        elif not self._finished:
            self._end(UpstreamError(
                f"the upstream of model {self._model!r} ended the stream before it was complete",
                code="upstream_closed",
            ))
        else:
            self._end(None)

    def _end(self, error: PromptcastError | None) -> None:
        listener, self._listener = self._listener, None
        self._data = self._run = None
        if error is not None:
            self._response.close()
        if listener is None:
            return
        if error is None:
            listener.event(DONE)
        else:
            listener.end(error)

    def pause(self) -> None:
        self._response.pause_reading()

    def resume(self) -> None:
        self._response.resume_reading()

    async def aclose(self) -> None:
        # The listener held this stream and it the listener's methods: let go,
        # so the pair is freed without the cyclic collector.
        self._listener = self._data = self._run = None
        self._response.close()
