"""The OpenAI-compatible provider's pass-through test: which chunks may skip the JSON parse.

Everything else about the provider runs over real HTTP in test_api.py and
test_openai_sdk.py; here only the predicate, whose every "yes" must be a
chunk the full parse would pass on unchanged with nothing to note.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptcast.providers.openai_compat import _plain_content, _plain_run
from promptcast.sse import Decoder

from .upstream_double import chunk_json


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


@given(st.lists(st.sampled_from(CHUNKS), min_size=1, max_size=8))
def test_a_run_is_plain_exactly_when_each_of_its_chunks_is(chunks: list[str]) -> None:
    decoder = Decoder(strict_utf8=True)
    decoder.feed(b"data: first\n\n")
    _, run, _ = decoder.feed_block([f"data: {c}\n\n".encode() for c in chunks])
    assert run is not None
    assert _plain_run(run.raw) is all(_plain_content(c.encode()) for c in chunks)
