"""Tests of the SSE codec: the shared cases, the encoder, long lines, and property tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptcast.errors import SSEProtocolError
from promptcast.wire.sse import Decoder, Event, comment, encode

# The decoder checks runs with scan.py: on its C and its Python scans both.
pytestmark = pytest.mark.usefixtures("both_scans")

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "sse_cases.json").read_text(encoding="utf-8")
)


def case_bytes(case: dict[str, Any]) -> bytes:
    if "input_hex" in case:
        return bytes.fromhex(case["input_hex"])
    raw: bytes = case["input"].encode("utf-8")
    return raw


def expected_events(case: dict[str, Any]) -> list[Event]:
    return [Event(data=e["data"], event=e["event"], id=e["id"]) for e in case["events"]]


def decode_pieces(pieces: Iterable[bytes], **caps: int) -> list[Event]:
    decoder = Decoder(**caps)
    events: list[Event] = []
    for piece in pieces:
        events += decoder.feed(piece)
    events += decoder.close()
    return events


def reference_decode(raw: bytes) -> list[Event]:
    """A plain reading of WHATWG §9.2.6, for differential tests: slow but obvious."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    *lines, _unterminated = re.split(r"\r\n|\r|\n", raw.decode("utf-8", "replace"))
    events: list[Event] = []
    data, event_type, last_id = "", "", ""
    for line in lines:
        if line == "":
            if data:
                events.append(
                    Event(
                        data[:-1] if data.endswith("\n") else data, event_type or "message", last_id
                    )
                )
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


# --- the shared cases (tests/sse_cases.json, also run by the page's JS parser) ---

CASE_IDS = [c["name"] for c in CASES]


def test_case_file_is_well_formed() -> None:
    assert len(CASES) >= 40
    assert len(set(CASE_IDS)) == len(CASE_IDS)
    for case in CASES:
        assert set(case) in ({"name", "input", "events"}, {"name", "input_hex", "events"})
        for event in case["events"]:
            assert set(event) == {"event", "data", "id"}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_reference_agrees(case: dict[str, Any]) -> None:
    # Checks the expectations themselves against an independent, naive parser.
    assert reference_decode(case_bytes(case)) == expected_events(case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_whole(case: dict[str, Any]) -> None:
    assert decode_pieces([case_bytes(case)]) == expected_events(case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_byte_by_byte(case: dict[str, Any]) -> None:
    raw = case_bytes(case)
    assert decode_pieces(raw[i : i + 1] for i in range(len(raw))) == expected_events(case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_every_two_way_split(case: dict[str, Any]) -> None:
    raw = case_bytes(case)
    want = expected_events(case)
    for i in range(len(raw) + 1):
        assert decode_pieces([raw[:i], raw[i:]]) == want, f"split at byte {i}"


# --- decoder state: retry, last_event_id, close ---


def test_retry_digits_only() -> None:
    decoder = Decoder()
    assert decoder.retry is None
    decoder.feed(b"retry: 1500\n\n")
    assert decoder.retry == 1500
    for bad in (b"retry: 1a\n", b"retry: -5\n", b"retry:  10\n", b"retry:\n", b"retry: \xd9\xa3\n"):
        decoder.feed(bad)
        assert decoder.retry == 1500, bad
    decoder.feed(b"retry:0\n")
    assert decoder.retry == 0


def test_last_event_id_is_committed_at_the_blank_line() -> None:
    decoder = Decoder()
    assert decoder.feed(b"id: 7\n") == []
    assert decoder.last_event_id == ""
    decoder.feed(b"\n")  # an id-only block still commits the id
    assert decoder.last_event_id == "7"
    assert decoder.feed(b"data: a\n\nid: 8\ndata: b\n") == [Event("a", id="7")]
    assert decoder.last_event_id == "7"
    assert decoder.close() == []  # the unterminated block (and its id) is dropped
    assert decoder.last_event_id == "7"


def test_close_resets_for_a_new_stream_but_keeps_id_and_retry() -> None:
    decoder = Decoder()
    decoder.feed(b"\xef\xbb\xbfid: 3\nretry: 900\ndata: a\n\nevent: x\ndata: half")
    assert decoder.close() == []
    assert (decoder.last_event_id, decoder.retry) == ("3", 900)
    # The next stream may open with its own BOM; nothing of the old block leaks.
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [Event("b", id="3")]


def test_cr_ends_the_line_at_once() -> None:
    # The event is dispatched on the CR, without waiting to see whether LF follows.
    decoder = Decoder()
    assert decoder.feed(b"data: a\r\r") == [Event("a")]
    assert decoder.feed(b"\ndata: b\r\n") == []  # that LF belonged to the CR
    assert decoder.feed(b"\r") == [Event("b")]


def test_bom_split_across_three_feeds() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.feed(b"\xbfdata: a\n\n") == [Event("a")]


def test_empty_feeds_are_harmless() -> None:
    assert decode_pieces([b"", b"data: a\r", b"", b"\n", b"", b"\n", b""]) == [Event("a")]


# --- the encoder ---


@pytest.mark.parametrize(
    ("kwargs", "frame"),
    [
        ({"data": "hi"}, b"data: hi\n\n"),
        ({"data": ""}, b"data: \n\n"),
        ({"data": "a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc\n"}, b"data: a\ndata: b\ndata: c\ndata: \n\n"),
        ({"data": "\n"}, b"data: \ndata: \n\n"),
        ({"data": " lead"}, b"data:  lead\n\n"),
        ({"data": "a\u2028b\u0085c"}, "data: a\u2028b\u0085c\n\n".encode()),
        ({"data": "你好"}, "data: 你好\n\n".encode()),
        ({"data": "x", "event": "delta"}, b"event: delta\ndata: x\n\n"),
        ({"data": "x", "id": "7"}, b"id: 7\ndata: x\n\n"),
        ({"data": "x", "retry": 3000}, b"retry: 3000\ndata: x\n\n"),
        (
            {"data": "a\nb", "retry": 10, "event": "error", "id": "e1"},
            b"id: e1\nevent: error\nretry: 10\ndata: a\ndata: b\n\n",
        ),
    ],
)
def test_encode_table(kwargs: dict[str, Any], frame: bytes) -> None:
    assert encode(**kwargs) == frame


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\rb"},
        {"id": "1\n"},
        {"id": "\r1"},
        {"id": "a\0b"},
        {"retry": -1},
    ],
)
def test_encode_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        encode("x", **kwargs)


def test_encode_decodes_back() -> None:
    frame = encode("a\r\nb", event="delta", id="9", retry=5)
    decoder = Decoder()
    assert decoder.feed(frame) == [Event("a\nb", event="delta", id="9")]
    assert decoder.retry == 5


def test_comment() -> None:
    assert comment() == b": keep-alive\n\n"
    assert comment("a\nb") == b": a\n: b\n\n"
    assert decode_pieces([comment(), comment("x\r\ny"), encode("z")]) == [Event("z")]


# --- long lines and the caps ---

EIGHT_MB = 8 * 1024 * 1024
PIECE = 64 * 1024


def test_8mb_line_in_64k_pieces_decodes() -> None:
    payload = b"data: " + b"x" * EIGHT_MB + b"\n\n"
    pieces = (payload[i : i + PIECE] for i in range(0, len(payload), PIECE))
    events = decode_pieces(pieces, max_line_bytes=16 << 20, max_event_bytes=16 << 20)
    assert len(events) == 1
    assert len(events[0].data) == EIGHT_MB


def test_1mb_line_one_byte_at_a_time_decodes() -> None:
    # Linear in the line's length: the buffer is never rescanned.
    size = 1 << 20
    decoder = Decoder(max_line_bytes=2 << 20, max_event_bytes=2 << 20)
    feed = decoder.feed
    for byte in (b"data: ", *([b"y"] * size)):
        assert feed(byte) == []
    assert feed(b"\r") == []
    [event] = feed(b"\r")
    assert event.data == "y" * size


def test_line_past_the_cap_raises() -> None:
    decoder = Decoder()  # 1 MiB cap by default
    with pytest.raises(SSEProtocolError, match="max_line_bytes=1048576"):
        for _ in range(EIGHT_MB // PIECE):
            decoder.feed(b"z" * PIECE)
    # The decoder stays failed.
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"\n\n")
    with pytest.raises(SSEProtocolError):
        decoder.close()


def test_complete_line_past_the_cap_in_one_feed_raises() -> None:
    with pytest.raises(SSEProtocolError, match="max_line_bytes=100"):
        Decoder(max_line_bytes=100).feed(b": " + b"c" * 200 + b"\n\n")


def test_partial_line_after_complete_lines_past_the_cap_raises() -> None:
    with pytest.raises(SSEProtocolError, match="max_line_bytes=100"):
        Decoder(max_line_bytes=100).feed(b"data: a\n\ndata: " + b"c" * 200)


def test_event_data_past_the_cap_raises() -> None:
    decoder = Decoder(max_line_bytes=100, max_event_bytes=1000)
    line = b"data: " + b"d" * 90 + b"\n"
    assert decoder.feed(line * 10 + b"\n") != []  # 910 bytes of data: fine
    with pytest.raises(SSEProtocolError, match="max_event_bytes=1000"):
        for _ in range(11):
            decoder.feed(line)


def test_line_exactly_at_the_cap_is_fine() -> None:
    line = b"data: " + b"e" * 94  # 100 bytes
    assert decode_pieces([line, b"\n\n"], max_line_bytes=100) == [Event("e" * 94)]
    assert decode_pieces([line + b"\n\n"], max_line_bytes=100) == [Event("e" * 94)]


# --- property tests ---

field_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)
frames = st.lists(
    st.tuples(
        st.text(
            st.one_of(
                st.characters(codec="utf-8"),
                st.sampled_from("\r\n\u2028\u2029\u0085\x0b\x0c\x1c\ufeff"),
            ),
            max_size=40,
        ),
        st.none() | field_text,
        st.none() | field_text.filter(lambda s: "\0" not in s),
        st.none() | st.integers(min_value=0, max_value=10**12),
    ),
    max_size=8,
)


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


def _expected_from_frames(
    frames_: list[tuple[str, str | None, str | None, int | None]],
) -> list[Event]:
    want: list[Event] = []
    last_id = ""
    for data, event, id_, _retry in frames_:
        if id_ is not None:
            last_id = id_
        normalised = data.replace("\r\n", "\n").replace("\r", "\n")
        want.append(Event(normalised, event or "message", last_id))
    return want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_roundtrip_random_splits(
    frames_: list[tuple[str, str | None, str | None, int | None]],
    cuts: list[int],
    bom: bool,
) -> None:
    raw = (b"\xef\xbb\xbf" if bom else b"") + b"".join(
        encode(d, event=e, id=i, retry=r) for d, e, i, r in frames_
    )
    decoder = Decoder()
    got: list[Event] = []
    for piece in split_at(raw, cuts):
        got += decoder.feed(piece)
    got += decoder.close()
    want = _expected_from_frames(frames_)
    assert got == want
    assert decoder.last_event_id == (want[-1].id if want else "")
    retries = [r for *_, r in frames_ if r is not None]
    assert decoder.retry == (retries[-1] if retries else None)


sse_ish_bytes = st.lists(
    st.sampled_from(
        [
            b"data",
            b"data:",
            b"data: ",
            b"event:",
            b"id:",
            b"retry: 1",
            b":",
            b" ",
            b"\0",
            b"\r",
            b"\n",
            b"\r\n",
            b"\xef\xbb\xbf",
            b"\xe4\xbd",
            b"\xa0",
            b"\xff",
            b"x",
            b"\xe2\x80\xa8",
        ]
    )
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(sse_ish_bytes, st.lists(st.integers(min_value=0), max_size=12))
def test_fuzz_matches_reference(raw: bytes, cuts: list[int]) -> None:
    got = decode_pieces(split_at(raw, cuts))
    assert got == reference_decode(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300) | sse_ish_bytes,
    st.lists(st.integers(min_value=0), max_size=12),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=40),
)
def test_fuzz_raises_only_protocol_errors(
    raw: bytes, cuts: list[int], max_line: int, max_event: int
) -> None:
    decoder = Decoder(max_line_bytes=max_line, max_event_bytes=max_event)
    try:
        for piece in split_at(raw, cuts):
            for event in decoder.feed(piece):
                assert type(event) is Event
                assert all(type(v) is str for v in (event.data, event.event, event.id))
        assert decoder.close() == []
    except SSEProtocolError as exc:
        assert "max_line_bytes" in str(exc) or "max_event_bytes" in str(exc)
    assert type(decoder.last_event_id) is str


# --- the relay's fast path: simple_event must agree with feed, or step aside ---

def _both_ways(prefix: bytes, chunk: bytes, **options: Any) -> tuple[Event | None, Any]:
    """What simple_event gives (as the event feed would make of it) and what feed gives."""
    fast, slow = Decoder(**options), Decoder(**options)
    fast.feed(prefix)
    slow.feed(prefix)
    got = fast.simple_event(chunk)
    try:
        expected: Any = slow.feed(chunk)
    except SSEProtocolError as exc:
        expected = exc
    if got is None:  # stepping aside is always allowed; the slow path then decides
        try:
            assert fast.feed(chunk) == expected
        except SSEProtocolError as exc:
            assert str(exc) == str(expected)
        return None, expected
    assert fast.last_event_id == slow.last_event_id
    return Event(got.decode(), id=fast.last_event_id), expected


@pytest.mark.parametrize(("prefix", "chunk", "fast"), [
    (b"data: a\n\n", b'data: {"x":"\xe4\xbd\xa0"}\n\n', True),
    (b"id: 7\ndata: a\n\n", b"data: [DONE]\n\n", True),
    (b"", b"data: first\n\n", False),             # the stream's start: the BOM rule applies
    (b"data: a\n\n", b"data: x\n\ndata: y\n\n", False),   # two events
    (b"data: a\n\n", b"data: x\r\n\r\n", False),       # CRLF
    (b"data: a\n\ndata: half", b"data: x\n\n", False),  # mid-line
    (b"data: a\n\nevent: e\n", b"data: x\n\n", False),  # mid-event
    (b"data: a\n\n", b"data: \xff\xfe\n\n", False),     # not UTF-8: feed says so
    (b"data: a\n\n", b"data:x\n\n", False),            # no space: feed handles it
])
def test_simple_event_agrees_with_feed(prefix: bytes, chunk: bytes, fast: bool) -> None:
    got, expected = _both_ways(prefix, chunk, strict_utf8=True)
    assert (got is not None) == fast
    if got is not None:
        assert expected == [got]


@given(prefix=st.sampled_from([b"data: a\n\n", b"", b"data: a\n", b"id: 1\n\n", b"\r"]),
       body=st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_simple_event_never_disagrees(prefix: bytes, body: bytes) -> None:
    for chunk in (b"data: " + body + b"\n\n", body):
        got, expected = _both_ways(prefix, chunk, strict_utf8=True, max_event_bytes=32)
        if got is not None:
            assert expected == [got]


# --- the relay's fast path at full speed: feed_block must agree with feed ---

def _block_events(decoder: Decoder, chunks: list[bytes]) -> tuple[list[Event], bool]:
    """feed_block's answer as the events feed would make of it, and whether it made a run."""
    before, run, after, error = decoder.feed_block(chunks)
    if error is not None:
        raise error
    if run is None:
        return before + after, False
    assert run.raw == b"".join(line + b"\n\n" for line in run.lines)
    middle = [Event(line[6:].decode(), id=run.id) for line in run.lines]
    return before + middle + after, True


def _feed_and_block(prefix: bytes, chunks: list[bytes], **options: Any) -> tuple[Any, Any, bool]:
    fast, slow = Decoder(**options), Decoder(**options)
    fast.feed(prefix)
    slow.feed(prefix)
    try:
        expected: Any = slow.feed(b"".join(chunks))
    except SSEProtocolError as exc:
        expected = str(exc)
    try:
        got, ran = _block_events(fast, chunks)
    except SSEProtocolError as exc:
        return str(exc), expected, False
    assert fast.last_event_id == slow.last_event_id
    return got, expected, ran


@pytest.mark.parametrize(("prefix", "chunks", "ran"), [
    # Events as a model service writes them, one a chunk, many a read.
    (b"data: a\n\n", [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"], True),
    # Events cut across chunks, and a read ending mid-event: the tail waits.
    (b"data: a\n\n", [b"data: 1\n\nda", b"ta: 2\n", b"\ndata: 3"], True),
    (b"data: a\n\n", [b"data: 1\n\n\n"], False),  # a blank line after: feed's
    # The end of an event the previous read began, then a run.
    (b"data: a\n\ndata: hal", [b"f\n\ndata: 2\n\n", b"data: 3\n\n"], True),
    # Its id carries on into the run's events.
    (b"id: 9\ndata: a\n\n", [b"data: 1\n\n", b"data: 2\n\n"], True),
    # The stream's start with a BOM (or what may be one): it goes through feed.
    (b"", [b"\xef\xbb\xbfdata: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"], True),
    (b"", [b"\xef", b"\xbb\xbfdata: 1\n\n", b"data: 2\n\n"], True),
    (b"", [b"", b"\xef\xbb\xbfdata: 1\n\n", b"data: 2\n\n"], True),
    (b"", [b"\xefdata: 1\n\n", b"data: 2\n\n"], True),  # not a BOM: kept
    # The stream's start with none: its first events are a run too.
    (b"", [b"data: 1\n\n", b"data: 2\n\n"], True),
    # Anything else is feed's: CRLF, comments, other fields, multi-line data.
    (b"data: a\n\n", [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"], False),
    (b"data: a\n\n", [b": keep-alive\n\n", b"data: 2\n\n"], False),
    (b"data: a\n\n", [b"event: error\ndata: {}\n\n", b"data: 2\n\n"], False),
    (b"data: a\n\n", [b"data: 1\ndata: 2\n\n", b"data: 3\n\n"], False),
    (b"data: a\n\n", [b"data:1\n\n", b"data: 2\n\n"], False),
    # ... and so is a run with any one line that is not a `data: ` one, where
    # it sorts below them or above them.
    (b"data: a\n\n", [b"data: 1\n\n: c\n\ndata: 2\n\n"], False),
    (b"data: a\n\n", [b"data: 1\n\nDATA: x\n\ndata: 2\n\n"], False),
    (b"data: a\n\n", [b"data: 1\n\nid: 7\n\ndata: 2\n\n"], False),
    (b"data: a\n\n", [b"data: 1\n\ndata:2\n\ndata: 3\n\n"], False),
    (b"data: a\n\n", [b"data: 1\n\n\n", b"data: 2\n\n"], False),
    (b"data: a\n\n", [b"data: \xff\n\n", b"data: 2\n\n"], False),  # not UTF-8: feed says so
    (b"data: a\n\n", [b"data: 1", b"\n"], False),  # no whole event yet
])
def test_feed_block_agrees_with_feed(prefix: bytes, chunks: list[bytes], ran: bool) -> None:
    got, expected, made_run = _feed_and_block(prefix, chunks, strict_utf8=True)
    assert got == expected
    assert made_run == ran


@pytest.mark.parametrize("tail", [b"d", b"da"])
def test_feed_block_keeps_a_reads_short_tail_for_the_next(tail: bytes) -> None:
    decoder = Decoder()
    decoder.feed(b"data: a\n\n")
    got, ran = _block_events(decoder, [b"data: 1\n\n" + tail])
    assert got == [Event("1")] and ran
    assert decoder.feed(b"data: 2\n\n"[len(tail):]) == [Event("2")]


def test_feed_block_leaves_events_past_the_limits_to_feed() -> None:
    chunks = [b"data: " + b"x" * 20 + b"\n\n"] * 3
    got, expected, ran = _feed_and_block(b"data: a\n\n", chunks, max_event_bytes=32,
                                         max_line_bytes=32)
    assert got == expected and len(got) == 3 and not ran


@given(prefix=st.sampled_from([b"data: a\n\n", b"", b"data: a\n", b"id: 1\n\n", b"\r",
                               b"data: a\n\ndata: b"]),
       raw=sse_ish_bytes | st.lists(st.sampled_from(
           [b"data: 1\n\n", b"data: [DONE]\n\n", b'data: {"a":"\xe4\xbd\xa0"}\n\n', b"\n",
            b"data: ", b": c\n", b"\r\n", b"id: 5\r\r", b"id: 6\n"]), max_size=12).map(b"".join),
       cuts=st.lists(st.integers(min_value=0), max_size=8))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_feed_block_never_disagrees(prefix: bytes, raw: bytes, cuts: list[int]) -> None:
    got, expected, _ = _feed_and_block(prefix, split_at(raw, cuts), strict_utf8=True,
                                       max_event_bytes=64)
    assert got == expected


@pytest.mark.parametrize("fault", [b"data: " + b"x" * 40, b"data: \xff\n\n"],
                         ids=["line over the limit", "invalid utf-8"])
def test_feed_block_returns_the_events_before_a_fault_with_it(fault: bytes) -> None:
    decoder = Decoder(max_line_bytes=32, max_event_bytes=32, strict_utf8=True)
    decoder.feed(b"data: 0\n\n")
    before, run, after, error = decoder.feed_block(
        [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", fault])
    got = before + ([Event(line[6:].decode()) for line in run.lines] if run else []) + after
    assert [e.data for e in got] == ["1", "2", "3"]
    assert isinstance(error, SSEProtocolError)
    with pytest.raises(SSEProtocolError):  # the stream stays broken
        decoder.feed_block([b"data: 4\n\n"])
