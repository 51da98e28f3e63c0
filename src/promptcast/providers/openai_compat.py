"""Any OpenAI-compatible chat completions API over HTTP: DashScope, OpenAI, vLLM, Ollama, ..."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from promptcast.errors import PromptcastError, SSEProtocolError, UpstreamError
from promptcast.models import ModelSpec
from promptcast.providers.base import ChatChunk, ChatRequest, ChunkListener
from promptcast.redact import Redactor, safe_url
from promptcast.wire import scan
from promptcast.wire.sse import Decoder, Event, Run
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
        return _OpenAIStream(self.spec.name, response, self._redact, self._max_event_bytes)

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
    __slots__ = ("_decoder", "_finished", "_listener", "_model", "_passthrough",
                 "_passthrough_run", "_redact", "_response")

    def __init__(
        self, model: str, response: Response, redact: Redactor, max_event_bytes: int
    ) -> None:
        self._model = model
        self._response = response
        self._redact = redact
        self._decoder = Decoder(max_line_bytes=max_event_bytes, max_event_bytes=max_event_bytes,
                                strict_utf8=True)
        self._listener: ChunkListener | None = None
        self._passthrough: Callable[[bytes], None] | None = None
        self._passthrough_run: Callable[[Run], None] | None = None
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

    async def aclose(self) -> None:
        await self._response.aclose()

    # -- push mode: chunks handed over inside the upstream's read callback -------

    def push(self, listener: ChunkListener) -> None:
        self._listener = listener
        self._passthrough = listener.passthrough
        self._passthrough_run = listener.passthrough_run
        # The end of a read goes straight to the listener. Reads can still end
        # after the stream did (`[DONE]` does not close the response), until
        # `close()`: the listener's flush takes that (ChunkListener).
        self._response.deliver(self._on_bodies, self._on_end, listener.flush)

    def _on_bodies(self, bodies: list[bytes]) -> None:
        """One upstream read's body chunks: one event (as models write), or many at once."""
        passthrough = self._passthrough
        if passthrough is None:
            return
        decoder = self._decoder
        if len(bodies) == 1:
            payload = decoder.simple_event(bodies[0])
            if payload is not None:
                if _plain_content(payload):
                    passthrough(payload)
                else:
                    self._on_events([Event(payload.decode())])
                return
        try:
            before, run, after, error = decoder.feed_block(bodies)
        except SSEProtocolError as exc:
            before, run, after, error = [], None, [], exc
        self._on_events(before)
        if run is not None:
            head, rest = _plain_head(run)
            if head is not None and self._passthrough_run is not None:
                self._passthrough_run(head)
            # The stream's end, say (its finish and usage chunks): event by event.
            self._on_events([Event(line[6:].decode()) for line in rest])
        self._on_events(after)
        if error is not None:
            self._end(error)

    def _on_events(self, events: list[Event]) -> None:
        try:
            for event in events:
                listener = self._listener
                if listener is None:
                    return  # ended, or closed by the listener
                data = event.data
                encoded = data.encode() if event.event == "message" else b""
                if encoded and _plain_content(encoded):
                    assert self._passthrough is not None
                    self._passthrough(encoded)
                elif data == "[DONE]":
                    self._end(None)
                else:
                    chunk = self._parse(event.event, data)
                    self._finished = self._finished or chunk.finish_reason is not None
                    listener.chunk(chunk)
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
        self._passthrough = self._passthrough_run = None
        if error is not None:
            self._response.close()
        if listener is not None:
            listener.end(error)

    def pause(self) -> None:
        self._response.pause_reading()

    def resume(self) -> None:
        self._response.resume_reading()

    def close(self) -> None:
        self._listener = self._passthrough = self._passthrough_run = None
        self._response.close()


# How many chunks at the end of a run may be parsed while the rest passes on
# unparsed: a stream's finish chunk, its usage chunk and `[DONE]`. A stream
# that ends with more odd ones takes the event-by-event path, as it did.
_MAX_PARSED_TAIL = 3


def _plain_head(run: Run) -> tuple[Run | None, list[bytes]]:
    """`run`, or its start before up to 3 odd last chunks if that start is plain; else None.
    Also the lines after it, to be parsed.

    At full speed a stream's last read holds its finish (and usage) chunks
    after hundreds of plain ones: only those few are parsed, not the read. A
    run with an odd chunk anywhere else goes event by event, as before.
    """
    if _plain_run(run):
        return run, []
    lines = run.lines
    count = len(lines)
    tail = 0
    while (tail < _MAX_PARSED_TAIL and tail < count - 1
           and not _plain_content(lines[count - tail - 1][6:])):
        tail += 1
    # One more scan of the run only when it looks like a stream's end: a plain
    # first chunk, odd last ones (a stream that is never plain pays nothing).
    if tail == 0 or not _plain_content(lines[0][6:]):
        return None, lines
    rest = lines[count - tail:]
    cut = len(run.raw) - sum(len(line) + 2 for line in rest)
    head = Run(run.raw[:cut], lines[:count - tail], run.id)
    return (head, rest) if _plain_run(head) else (None, lines)


def _plain_run(run: Run) -> bool:
    """`_plain_content` of every event of `run`, by C loops over all of them at once."""
    # A run's events are one `data: ` line each: so each line ends the way a
    # plain chunk does when there are as many such ends as lines, and each
    # starts with `{` when the least and the greatest of them do (the lines
    # with a given start are one stretch of the byte order).
    # The searches are `memmem` passes in C (scan.py): CPython's own search for
    # a needle this long in a long buffer is a scalar loop.
    lines, raw = run.lines, run.raw
    events = len(lines)
    return (min(lines)[:7] == b"data: {" and max(lines)[:7] == b"data: {"
            and scan.count(raw, b'"finish_reason":null}]}\n\n') == events
            and scan.count(raw, b'"finish_reason"') == events
            and not scan.contains(raw, b'"error"') and not scan.contains(raw, b'"usage":{'))


def _plain_content(data: bytes) -> bool:
    """Whether a message event's data can be passed on unparsed: one choice, not finished,
    no usage, no error.

    Conservative: any doubt (another key order, spacing, several choices, the
    word `"error"` in the text) sends the chunk through the full parse. Like
    the split gateway, it relays such a chunk's JSON text without checking it.
    """
    # OpenAI's own shape first: `choices` last, its one choice ending the object.
    # One line only: a relay frames pass-through data as one `data:` line. A
    # `usage` goes through the parse, which drops it when the client did not ask.
    return (data[:1] == b"{" and data.endswith(b'"finish_reason":null}]}')
            # Not bytes `in` (it makes and drops a TypeError each: relay.Relay.data).
            and data.count(b'"finish_reason"') == 1 and not scan.contains(data, b'"error"')
            and 0x0A not in data and not scan.contains(data, b'"usage":{'))
