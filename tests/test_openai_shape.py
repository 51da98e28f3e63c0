"""OpenAI's chunk shapes: which chunks may skip the JSON parse.

Every "yes" must be a chunk the full parse would pass on unchanged with nothing to note.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptcast.providers.openai_shape import plain_content, plain_head, plain_run
from promptcast.wire.sse import Decoder, Run

from .upstream_double import chunk_json

# The pass-through test searches runs with scan.py: on its C and its Python scans both.
pytestmark = pytest.mark.usefixtures("both_scans")


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
def testplain_content(data: str, plain: bool) -> None:
    assert plain_content(data.encode()) is plain


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
    decoder.feed(b"id: 7\ndata: first\n\n")
    _, run, _, _ = decoder.feed_block([f"data: {c}\n\n".encode() for c in chunks])
    assert run is not None
    return run


@given(st.lists(st.sampled_from(CHUNKS + NOT_STARTING_PLAIN), min_size=1, max_size=8))
def test_a_run_is_plain_exactly_when_each_of_its_chunks_is(chunks: list[str]) -> None:
    assert plain_run(_run_of(chunks)) is all(plain_content(c.encode()) for c in chunks)


@pytest.mark.parametrize("odd", NOT_STARTING_PLAIN, ids=["below", "above"])
def test_a_run_with_one_chunk_not_starting_plain_is_not_plain(odd: str) -> None:
    plain = chunk_json("a")
    assert not plain_content(odd.encode())
    assert plain_run(_run_of([plain, odd, plain])) is False


USAGE = chunk_json(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
PLAIN = [chunk_json(f"t{i}") for i in range(3)]


@pytest.mark.parametrize(("chunks", "head"), [
    (PLAIN, 3),                                                  # all plain: the run itself
    ([*PLAIN, chunk_json(finish="stop")], 3),                    # a stream's end ...
    ([*PLAIN, chunk_json(finish="stop"), USAGE, "[DONE]"], 3),   # ... with usage and [DONE]
    ([*PLAIN, chunk_json(finish="stop"), USAGE, USAGE, "[DONE]"], 0),  # more than 3 odd ones
    ([PLAIN[0], chunk_json(finish="stop"), PLAIN[1]], 0),        # the odd one inside
    ([chunk_json(finish="stop"), *PLAIN], 0),
    ([chunk_json(finish="stop"), PLAIN[0], USAGE], 0),           # the first one odd
    ([PLAIN[0], "[DONE]"], 1),
])
def test_plain_head_is_the_plain_start_of_a_stream_end(chunks: list[str], head: int) -> None:
    run = _run_of(chunks)
    got, rest = plain_head(run)
    if head == len(chunks):
        assert got is run and rest == []
    elif head == 0:
        assert got is None and rest == run.lines
    else:
        assert got is not None and got.lines == run.lines[:head] and rest == run.lines[head:]
        assert got.raw == b"".join(line + b"\n\n" for line in got.lines)
        assert got.id == run.id == "7"


@given(st.lists(st.sampled_from([*CHUNKS, *NOT_STARTING_PLAIN, "[DONE]"]), min_size=1,
                max_size=8))
def test_plain_head_passes_on_only_plain_chunks_and_loses_none(chunks: list[str]) -> None:
    run = _run_of(chunks)
    head, rest = plain_head(run)
    assert (head.lines if head is not None else []) + rest == run.lines
    if head is not None:
        assert all(plain_content(line[6:]) for line in head.lines)
        assert head.raw == b"".join(line + b"\n\n" for line in head.lines)


