"""Tests of scan.py: the C scans and their Python reference give the same answers."""

from __future__ import annotations

import importlib
import logging
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcast.wire import scan

try:
    _scan: Any = importlib.import_module("promptcast.wire._scan")
except ImportError:  # test_the_suite_runs_the_c_scans says so; the Python half still runs
    _scan = None

PY = types.SimpleNamespace(data_lines=scan.py_data_lines, frame=scan.py_frame,
                           count=scan.py_count, contains=scan.py_contains,
                           find_line=scan.py_find_line)
NEEDS_C = pytest.mark.skipif(_scan is None, reason="promptcast.wire._scan not built")
IMPLS = pytest.mark.parametrize("impl", [
    pytest.param(_scan, id="c", marks=NEEDS_C),
    pytest.param(PY, id="python"),
])


def test_the_suite_runs_the_c_scans() -> None:
    # `make test` builds the C module; a silent fall back to Python would
    # leave it untested and the relay slow.
    assert _scan is not None, "promptcast.wire._scan was not built: are the Python headers there?"
    assert scan.NATIVE
    assert scan.data_lines is _scan.data_lines


@IMPLS
@pytest.mark.parametrize(("raw", "lines"), [
    (b"data: a\n\n", [b"data: a"]),
    (b"data: \n\n", [b"data: "]),
    (b"data: a\n\ndata: {\"b\":1}\n\n", [b"data: a", b'data: {"b":1}']),
    (b"data: caf\xc3\xa9\n\n", [b"data: caf\xc3\xa9"]),
    (b"data: a\n\ndata: b\n\ndata: c\n\n", [b"data: a", b"data: b", b"data: c"]),
])
def test_data_lines_of_plain_events(impl: Any, raw: bytes, lines: list[bytes]) -> None:
    assert impl.data_lines(raw) == lines


@IMPLS
@pytest.mark.parametrize("raw", [
    b"",
    b"data: a",  # no line end
    b"data: a\n",  # no blank line after it
    b"data: a\n\ndata: b\n",  # the last event unfinished
    b"data: a\n\n\n\n",  # an empty line as an event
    b"data: a\ndata: b\n\n",  # two data lines in one event
    b"data: a\r\n\r\n",  # CR line ends
    b"data: a\rb\n\n",  # a CR inside
    b"data:a\n\n",  # no space: a valid field, but not plain
    b"data\n\n",
    b": comment\n\n",
    b"data: a\n\n: comment\n\n",  # sorts below `data: `
    b"data: a\n\nid: 7\n\n",  # sorts above `data: `
    b"data: a\n\nevent: x\n\n",
    b"data: a\n\nretry: 1\n\n",
    b"data: a\n\ndata: b\n\nx",  # bytes after the last event
    b"data: a\n\ndata:",
    b"Data: a\n\n",
    b"data: a\n\n\n",
    b"data: a\nxdata: b\n\n",  # a line end not followed by a blank line
    b"data: a\n\x00data: b\n\n",
    b"data: a\n\ndata",  # an event cut short after its first bytes
    b"data: a\n\ndata: ",
    b"data: a\n\ndata: \n",
])
def test_data_lines_refuses_anything_else(impl: Any, raw: bytes) -> None:
    assert impl.data_lines(raw) is None


_PIECES = [b"data: ", b"data:", b"data", b"d", b"x", b" ", b"\n", b"\n\n", b"\r", b":",
           b"id: 1", b"\xc3\xa9", b"{}", b"[DONE]"]


@NEEDS_C
@settings(max_examples=2000)
@given(st.lists(st.sampled_from(_PIECES), max_size=24).map(b"".join))
def test_data_lines_agrees_with_the_reference(raw: bytes) -> None:
    assert _scan.data_lines(raw) == scan.py_data_lines(raw)


_VALUES = st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
                  min_size=1, max_size=30)


@NEEDS_C
@settings(max_examples=300)
@given(_VALUES)
def test_data_lines_gives_back_each_event(values: list[bytes]) -> None:
    raw = b"".join(b"data: %s\n\n" % value for value in values)
    assert _scan.data_lines(raw) == [b"data: " + value for value in values]


@NEEDS_C
@settings(max_examples=1500)
@given(_VALUES, st.data())
def test_data_lines_agrees_on_a_run_one_byte_off(values: list[bytes], data: st.DataObject) -> None:
    # Plain runs with one byte changed, inserted or dropped: the edges a
    # scan gets wrong, where random bytes seldom land.
    raw = bytearray(b"".join(b"data: %s\n\n" % value for value in values))
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.sampled_from(b"\n\r\x00 :ad"))
    how = data.draw(st.sampled_from(["change", "insert", "drop"]))
    if how == "change":
        raw[at] = byte
    elif how == "insert":
        raw.insert(at, byte)
    else:
        del raw[at]
    assert _scan.data_lines(bytes(raw)) == scan.py_data_lines(bytes(raw))


@IMPLS
def test_frame_puts_an_id_before_each_line(impl: Any) -> None:
    assert impl.frame(b"id: s1.", 9, [b"data: a", b"data: b", b"data: c"]) == (
        b"id: s1.9\ndata: a\n\nid: s1.10\ndata: b\n\nid: s1.11\ndata: c\n\n")
    assert impl.frame(b"id: 50%.", 0, [b"data: %d"]) == b"id: 50%.0\ndata: %d\n\n"
    assert impl.frame(b"", 1, []) == b""


@IMPLS
def test_frame_refuses_what_it_cannot_frame(impl: Any) -> None:
    with pytest.raises(ValueError):
        impl.frame(b"id: s.", -1, [b"data: a"])
    with pytest.raises(TypeError):
        impl.frame(b"id: s.", 1, [b"data: a", "data: b"])


@IMPLS
def test_frame_numbers_up_to_64_bits(impl: Any) -> None:
    top = 2**63 - 1
    assert impl.frame(b"id: s.", top, [b"data: a"]) == b"id: s.%d\ndata: a\n\n" % top
    for first, lines in ((top, [b"data: a", b"data: b"]), (2**63, []), (2**64, [b"data: a"])):
        with pytest.raises(OverflowError):
            impl.frame(b"id: s.", first, lines)


@NEEDS_C
def test_the_c_scans_check_their_arguments() -> None:
    with pytest.raises(TypeError):
        _scan.frame(b"id: s.", 1, (b"data: a",))
    with pytest.raises(TypeError):
        _scan.frame("id: s.", 1, [b"data: a"])
    with pytest.raises(TypeError):
        _scan.frame(b"id: s.", 1)
    with pytest.raises(TypeError):
        _scan.frame(b"id: s.", 1, [b"data: a"], b"more")
    for raw in ("data: a\n\n", bytearray(b"data: a\n\n"), memoryview(b"data: a\n\n"), None):
        with pytest.raises(TypeError):
            _scan.data_lines(raw)
    for call in (_scan.count, _scan.contains):
        with pytest.raises(TypeError):
            call(b"abc", b"a", b"b")
        with pytest.raises(TypeError):
            call(bytearray(b"abc"), b"a")


@NEEDS_C
@settings(max_examples=500)
@given(st.binary(max_size=12), st.integers(min_value=0, max_value=2**62),
       st.lists(st.binary(max_size=30), max_size=20))
def test_frame_agrees_with_the_reference(prefix: bytes, first: int,
                                         lines: list[bytes]) -> None:
    assert _scan.frame(prefix, first, lines) == scan.py_frame(prefix, first, lines)


@IMPLS
def test_count_and_contains(impl: Any) -> None:
    raw = b'data: {"usage":{"a":1}}\n\ndata: {"usage":null}\n\n'
    assert impl.count(raw, b'"usage"') == 2
    assert impl.count(raw, b'"usage":{') == 1
    assert impl.count(b"aaaa", b"aa") == 2  # non-overlapping, as bytes.count
    assert impl.count(b"a", b"aa") == 0
    assert impl.contains(raw, b'"usage":{')
    assert not impl.contains(raw, b'"error"')
    assert not impl.contains(b"", b"x")
    for call in (impl.count, impl.contains):
        with pytest.raises(ValueError):
            call(raw, b"")
        with pytest.raises(TypeError):
            call(raw, '"usage"')


@NEEDS_C
@settings(max_examples=1000)
@given(st.lists(st.sampled_from([b"a", b"b", b"ab", b"\x00", b'"usage":{', b"ba"]),
                max_size=40).map(b"".join),
       st.sampled_from([b"a", b"ab", b"aba", b"bab", b'"usage":{', b"\x00a", b"aaa"]))
def test_count_and_contains_agree_with_bytes(haystack: bytes, needle: bytes) -> None:
    assert _scan.count(haystack, needle) == haystack.count(needle)
    assert _scan.contains(haystack, needle) is (needle in haystack)


@IMPLS
def test_find_line(impl: Any) -> None:
    done = b"data: [DONE]"
    lines = [b"data: a", b"data: [DONE]x", done, b"data: b", done]
    assert impl.find_line(lines, done) == 2  # the first one
    assert impl.find_line(lines, b"data: a") == 0
    assert impl.find_line(lines[:2], done) == -1  # a longer line is not it
    assert impl.find_line([b"data: [DONE"], done) == -1  # nor a shorter one
    assert impl.find_line([b"data: [DONF]"], done) == -1  # nor one byte off
    assert impl.find_line([], done) == -1
    assert impl.find_line([b""], b"") == 0
    for args in (((b"data: a",), done), ([b"data: a"], "data: a"), ([done, "x"], b"x"),
                 ([bytearray(b"x")], b"x")):
        with pytest.raises(TypeError):
            impl.find_line(*args)


@NEEDS_C
def test_find_line_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        _scan.find_line([b"a"])
    with pytest.raises(TypeError):
        _scan.find_line([b"a"], b"a", b"a")


@NEEDS_C
@settings(max_examples=1000)
@given(st.lists(st.sampled_from([b"", b"a", b"ab", b"ba", b"data: [DONE]", b"data: [DONE] "]),
                max_size=30),
       st.sampled_from([b"", b"a", b"ab", b"data: [DONE]"]))
def test_find_line_agrees_with_the_reference(lines: list[bytes], line: bytes) -> None:
    assert _scan.find_line(lines, line) == scan.py_find_line(lines, line)


def test_a_server_without_the_c_scans_says_so(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="promptcast.scan"):
        scan.warn_if_python()
        assert caplog.records == []
        monkeypatch.setattr(scan, "NATIVE", False)
        scan.warn_if_python()
    assert "promptcast.wire._scan is not built" in caplog.text
    assert "python3-dev" in caplog.text
