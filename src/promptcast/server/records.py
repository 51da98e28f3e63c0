"""Run records for the streams the routes start: who asked, what, and the relay's tap.

A route that starts a stream asks `capture()` for a `Capture` (None when the
library or its recording is off), hands `capture.write` to the relay as its
tap, and `capture.finish(stats)` is called where the stream's end is logged.
An evaluation run's body is its recording (`evals/records.py`), which keeps
its result as an evaluation even when run records are off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptcast.evals.records import EvalRecording
from promptcast.ops.auth import owner_of
from promptcast.ops.ratelimit import CLIENT_SCOPE_KEY
from promptcast.server.runtime import Runtime
from promptcast.service import run_records
from promptcast.service.run_records import Capture

__all__ = ["Body", "Capture", "capture", "client_of"]

Body = run_records.Body | EvalRecording


def capture(rt: Runtime, client: str | None, stream_id: str, body: Body | None, *,
            kind: str | None = None) -> Capture | None:
    """A capture for the stream `stream_id` started for `client`, or None when not recording.

    `kind`: the run record's kind when it is not the body's own ("try" for a chat).
    """
    if isinstance(body, EvalRecording):
        return None if rt.library is None else body.capture(rt.library, owner_of(client),
                                                            stream_id)
    return run_records.capture(rt.library, owner_of(client), stream_id, body, kind=kind)


def client_of(scope: Mapping[str, Any]) -> str | None:
    """The client identity the key middleware left in `scope` (None without it)."""
    client: str | None = scope.get(CLIENT_SCOPE_KEY)
    return client
