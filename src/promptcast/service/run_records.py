"""A stream's run record (issue 20): what was asked, for whom, and the relay's tap for the rest.

Whoever starts a stream (an HTTP route, an MCP tool call) asks `capture()` for a
`Capture` (None when the library or its recording is off), hands
`capture.write` to the relay as its tap, and calls `capture.finish(stats)` at
the stream's end.
"""

from __future__ import annotations

from typing import Any, Protocol

from promptcast.providers.base import ChatRequest
from promptcast.service.schemas import OptimizeRequest
from promptcast.storage.library import Library
from promptcast.storage.recorder import Stats

Body = OptimizeRequest | ChatRequest


class Capture(Protocol):
    """One stream's records: the relay's tap (`write`), and its end (`finish`)."""

    def write(self, frames: bytes) -> None: ...

    def finish(self, stats: Stats) -> None: ...


def capture(library: Library | None, owner: str, stream_id: str, body: Body | None, *,
            kind: str | None = None) -> Capture | None:
    """A capture for the stream `stream_id` started for `owner`, or None when not recording."""
    if library is None or library.recorder is None or body is None:
        return None
    if isinstance(body, OptimizeRequest):
        request = body.as_json()
        request.pop("stream", None)
        if body.resumable:
            request["resumable"] = True
        return library.recorder.capture(stream_id, owner=owner, kind=kind or "optimize",
                                        model=body.model, mode=body.mode.value,
                                        request=request, input=body.prompt,
                                        template=body.template)
    messages = [{"role": m.role, "content": m.content} for m in body.messages]
    chat: dict[str, Any] = {"model": body.model, "messages": messages}
    for name in ("max_tokens", "temperature", "top_p"):
        if getattr(body, name) is not None:
            chat[name] = getattr(body, name)
    if body.stop:
        chat["stop"] = list(body.stop)
    last_user = next((m.content for m in reversed(body.messages) if m.role == "user"), "")
    return library.recorder.capture(stream_id, owner=owner, kind=kind or "chat",
                                    model=body.model, mode=None, request=chat,
                                    input=last_user)
