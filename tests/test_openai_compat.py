"""The OpenAI-compatible provider's pass-through test: which chunks may skip the JSON parse.

Everything else about the provider runs over real HTTP in test_api.py and
test_openai_sdk.py; here only the predicate, whose every "yes" must be a
chunk the full parse would pass on unchanged with nothing to note.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptcast.providers.openai_compat import _OpenAIStream, _plain_content, _plain_run
from promptcast.redact import Redactor
from promptcast.sse import Decoder, Run

from .upstream_double import chunk_json, event


def _two_choices() -> str:
    body = json.loads(chunk_json("a"))
    body["choices"].append({**body["choices"][0], "index": 1, "finish_reason": "stop"})
    return json.dumps(body, separators=(",", ":"))


@pytest.mark.parametrize(("data", "plain"), [
    (chunk_json("你好"), True),
    (chunk_json("", role="assistant"), True),
    (chunk_json('say "error" twice'), True),           # escaped quotes: not the key
    (chunk_json(finish="stop"), False),                # the end: parsed, to see it
    (chunk_json(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}), False),
    (chunk_json("error"), False),                      # the word itself: parsed, to be safe
    (_two_choices(), False),
    (json.dumps({"error": {"message": "x"}, "choices": [{"finish_reason": None}]},
                separators=(",", ":")), False),
    ('{"choices":[{"delta":{"content":"x"},"finish_reason":null,"index":0}],"usage":null}',
     False),                                           # another key order: parsed, still fine
    ('[{"finish_reason":null}]', False),
    ('{"usage":{"total_tokens":3},"choices":[{"delta":{"content":""},"finish_reason":null}]}',
     False),                                           # usage: parsed, to drop it if unasked
    ('{"choices":[{"delta":{"content":"x"},\n"finish_reason":null}]}', False),  # two lines
])
def test_plain_content(data: str, plain: bool) -> None:
    assert _plain_content(data.encode()) is plain


CHUNKS = [chunk_json("你好"), chunk_json("", role="assistant"), chunk_json(finish="stop"),
          chunk_json('say "error" twice'), chunk_json("error"), _two_choices(),
          chunk_json(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
          '{"choices":[{"delta":{"content":"x"},"finish_reason":null,"index":0}],"usage":null}',
          '[{"finish_reason":null}]']
# A plain chunk's end without its start: one sorts below plain chunks, one above.
NOT_STARTING_PLAIN = ['[{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}',
                      '~{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}']


def _run_of(chunks: list[str]) -> Run:
    decoder = Decoder(strict_utf8=True)
    decoder.feed(b"data: first\n\n")
    _, run, _, _ = decoder.feed_block([f"data: {c}\n\n".encode() for c in chunks])
    assert run is not None
    return run


@given(st.lists(st.sampled_from(CHUNKS + NOT_STARTING_PLAIN), min_size=1, max_size=8))
def test_a_run_is_plain_exactly_when_each_of_its_chunks_is(chunks: list[str]) -> None:
    assert _plain_run(_run_of(chunks)) is all(_plain_content(c.encode()) for c in chunks)


@pytest.mark.parametrize("odd", NOT_STARTING_PLAIN, ids=["below", "above"])
def test_a_run_with_one_chunk_not_starting_plain_is_not_plain(odd: str) -> None:
    plain = chunk_json("a")
    assert not _plain_content(odd.encode())
    assert _plain_run(_run_of([plain, odd, plain])) is False


class _Response:
    """What `_OpenAIStream` pushes from: the test hands it a read's chunks."""

    def deliver(self, on_bodies: Any, on_end: Any, on_read: Any) -> None:
        self.on_bodies = on_bodies

    def close(self) -> None:
        pass


class _Listener:
    """A ChunkListener that records what reaches it, in order."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.passthrough = self.got.append
        self.passthrough_run = lambda run: self.got.extend(line[6:] for line in run.lines)
        self.flush = lambda: None

    def chunk(self, chunk: Any) -> None:
        self.got.append(chunk.data.encode())

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
