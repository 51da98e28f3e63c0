"""Run records for the streams the routes start: who asked, what, and the relay's tap.

A route that starts a stream asks `capture()` for a `Capture` (None when the
library or its recording is off), hands `capture.write` to the relay as its
tap, and `capture.finish(stats)` is called where the stream's end is logged.
An evaluation run's body is its recording (`eval_records.py`), which keeps
its result as an evaluation even when run records are off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from promptcast.ops.auth import owner_of
from promptcast.ops.ratelimit import CLIENT_SCOPE_KEY
from promptcast.providers.base import ChatRequest
from promptcast.server.eval_records import EvalRecording
from promptcast.server.runtime import Runtime
from promptcast.service.schemas import OptimizeRequest
from promptcast.storage.recorder import Stats

__all__ = ["Body", "Capture", "capture", "client_of"]

Body = OptimizeRequest | ChatRequest | EvalRecording


class Capture(Protocol):
    """One stream's records: the relay's tap (`write`), and its end (`finish`)."""

    def write(self, frames: bytes) -> None: ...

    def finish(self, stats: Stats) -> None: ...


def capture(rt: Runtime, client: str | None, stream_id: str, body: Body | None, *,
            kind: str | None = None) -> Capture | None:
    """A capture for the stream `stream_id` started for `client`, or None when not recording.

    `kind`: the run record's kind when it is not the body's own ("try" for a chat).
    """
    library = rt.library
    if library is None or body is None:
        return None
    owner = owner_of(client)
    if isinstance(body, EvalRecording):
        return body.capture(library, owner, stream_id)
    if library.recorder is None:
        return None
    if isinstance(body, OptimizeRequest):
        request = body.as_json()
        request.pop("stream", None)
        if body.resumable:
            request["resumable"] = True
        return library.recorder.capture(stream_id, owner=owner, kind=kind or "optimize",
                                        model=body.model, mode=body.mode.value,
                                        request=request, input=body.prompt,
                                        template=getattr(body, "template", None))
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


def client_of(scope: Mapping[str, Any]) -> str | None:
    """The client identity the key middleware left in `scope` (None without it)."""
    client: str | None = scope.get(CLIENT_SCOPE_KEY)
    return client
