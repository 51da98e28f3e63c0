"""The byte scans of the relay's full-speed path: C where built, else the same in Python.

At full speed an upstream read holds hundreds of events, checked and re-framed
all at once. With bytes builtins each event still costs a share of a
microsecond: a search for a needle of six bytes or more in a long buffer is
CPython's scalar two-way loop, and a split or a %-format makes objects per
event (docs/benchmarks.md). `promptcast.wire._scan` (built from `_scan.c` on install) does each in
one pass of `memchr`/`memmem` and `memcpy`. The Python functions here are the
reference it must match, and what runs where no C compiler built it.
"""

from __future__ import annotations

import itertools
import logging

_MAX_SEQ = 2**63 - 1


def py_data_lines(raw: bytes) -> list[bytes] | None:
    """The `data: ...` lines of `raw` if it is whole one-line `data:` events
    (LF-framed, no CR); else None."""
    if raw[:6] != b"data: " or b"\r" in raw:
        return None
    # One line, one blank line, and so on: every other part is empty, the
    # last one too (`raw` ends with a blank line).
    parts = raw.split(b"\n")
    if not len(parts) & 1 or any(parts[1::2]) or parts[-1]:
        return None
    lines = parts[0:-1:2]  # not the empty part after the last LF
    # Every line starts with `data: `. The lines that do are one stretch of
    # the byte order, so the least and the greatest of them tell.
    if min(lines)[:6] != b"data: " or max(lines)[:6] != b"data: ":
        return None
    return lines


def py_frame(prefix: bytes, first: int, lines: list[bytes]) -> bytes:
    """Each line framed as `<prefix><n>\\n<line>\\n\\n`, n counting from `first`, in one bytes."""
    if first < 0:
        raise ValueError("first must be a non-negative sequence number")
    if first + max(len(lines), 1) - 1 > _MAX_SEQ:  # as the C one, whose numbers are 64-bit
        raise OverflowError("the last sequence number is too large")
    template = prefix.replace(b"%", b"%%") + b"%d\n%s\n\n"
    ids = range(first, first + len(lines))
    return (template * len(lines)) % tuple(
        itertools.chain.from_iterable(zip(ids, lines, strict=True)))


def py_count(haystack: bytes, needle: bytes) -> int:
    """`haystack.count(needle)` (non-overlapping); the needle must not be empty."""
    if not needle:
        raise ValueError("count(): empty needle")
    return haystack.count(needle)


def py_contains(haystack: bytes, needle: bytes) -> bool:
    """`needle in haystack`; the needle must not be empty."""
    if not needle:
        raise ValueError("contains(): empty needle")
    return needle in haystack


def py_find_line(lines: list[bytes], line: bytes) -> int:
    """The index of the first item of `lines` equal to `line`, or -1."""
    if type(lines) is not list or type(line) is not bytes:
        raise TypeError("find_line() takes a list of bytes and a bytes")
    for i, item in enumerate(lines):
        # Each item checked as it is reached, as the C one does.
        if type(item) is not bytes:
            raise TypeError("find_line() takes a list of bytes and a bytes")
        if item == line:
            return i
    return -1


try:
    from promptcast.wire._scan import contains, count, data_lines, find_line, frame
except ImportError:  # not built (no C compiler at install): the same, slower
    NATIVE = False
    data_lines, frame, count, contains, find_line = (
        py_data_lines, py_frame, py_count, py_contains, py_find_line)
else:
    NATIVE = True

__all__ = ["NATIVE", "contains", "count", "data_lines", "find_line", "frame", "warn_if_python"]

log = logging.getLogger("promptcast.scan")


def warn_if_python() -> None:
    """At start-up: say so when the scans run in Python (the C module did not build)."""
    if not NATIVE:
        log.warning("promptcast.wire._scan is not built: a fast stream's events cost about twice "
                    "the CPU. Install a C compiler and the Python headers (Debian: "
                    "build-essential python3-dev), then reinstall promptcast")
