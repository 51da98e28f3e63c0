"""The OpenAI-compatible provider's push mode: what a read's chunks become for the listener.

Everything else about the provider runs over real HTTP in test_api.py and
test_openai_sdk.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from promptcast.providers.openai_compat import _OpenAIStream
from promptcast.redact import Redactor

from .upstream_double import chunk_json, event

# The pass-through test searches runs with scan.py: on its C and its Python scans both.
pytestmark = pytest.mark.usefixtures("both_scans")

USAGE = chunk_json(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})


class _Response:
    """What `_OpenAIStream` pushes from: the test hands it a read's chunks."""

    def deliver(self, on_bodies: Any, on_end: Any, on_read: Any) -> None:
        self.on_bodies = on_bodies

    def close(self) -> None:
        pass


class _Listener:
    """An `sse.EventListener` that records what reaches it, in order."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def data(self, payload: bytes) -> None:
        self.got.append(payload)

    def plain(self, run: Any) -> None:
        self.got.extend(line[6:] for line in run.lines)

    def event(self, event: Any) -> None:
        self.got.append(event.data.encode())

    def flush(self) -> None:
        pass

    def end(self, error: Any) -> None:
        self.got.append(("end", type(error).__name__))


@pytest.mark.parametrize("fault", [b"data: " + b"x" * 600, b"data: \xff\n\n"],
                         ids=["line over the limit", "invalid utf-8"])
def test_events_before_a_fault_in_the_same_read_still_reach_the_client(fault: bytes) -> None:
    good = [chunk_json("", role="assistant"), chunk_json("a"), chunk_json("b")]
    response = _Response()
    stream = _OpenAIStream("m", response, Redactor(()), max_event_bytes=512)  # type: ignore[arg-type]
    listener = _Listener()
    stream.push(listener)  # type: ignore[arg-type]
    # Four HTTP chunks that one socket read brought: three whole events, then the fault.
    response.on_bodies([event(c) for c in good] + [fault])
    assert listener.got == [*(c.encode() for c in good), ("end", "SSEProtocolError")]


class _RunListener(_Listener):
    """A _Listener that also records how many events each pass-through run carried."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[int] = []
    def plain(self, run: Any) -> None:
        self.runs.append(len(run.lines))
        self.got.extend(line[6:] for line in run.lines)


def _started_stream(first: str) -> tuple[_Response, _RunListener]:
    """A stream pushing to a `_RunListener`, past its first event (`first`)."""
    response = _Response()
    stream = _OpenAIStream("m", response, Redactor(()), max_event_bytes=65536)  # type: ignore[arg-type]
    listener = _RunListener()
    stream.push(listener)  # type: ignore[arg-type]
    response.on_bodies([event(first)])
    assert listener.got == [first.encode()]
    listener.runs.clear()  # the tests count the runs of the reads after it
    return response, listener


def test_a_stream_ending_read_passes_its_plain_chunks_on_as_one_run() -> None:
    first = chunk_json("", role="assistant")
    response, listener = _started_stream(first)
    content = [chunk_json(f"t{i}") for i in range(5)]
    end = [chunk_json(finish="stop"), USAGE]
    response.on_bodies([event(c) for c in [*content, *end]] + [b"data: [DONE]\n\n"])
    assert listener.runs == [5]  # the content in one piece; its end parsed
    assert listener.got == [first.encode(), *(c.encode() for c in [*content, *end]),
                            b"[DONE]"]


def test_a_stream_ended_before_a_run_in_the_same_read_passes_nothing_on() -> None:
    # `[DONE]` cut across reads: its end comes in the read that also holds a
    # run with a plain start; the stream is over before that run.
    first = chunk_json("", role="assistant")
    response, listener = _started_stream(first)
    response.on_bodies([b"data: [DO"])
    response.on_bodies([b"NE]\n\n", event(chunk_json("a")), event(chunk_json("b")),
                        event(chunk_json(finish="stop"))])
    assert listener.runs == []
    assert listener.got == [first.encode(), b"[DONE]"]
