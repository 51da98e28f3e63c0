"""A guard against a small model's loops: the same line (or sentence) over and over.

Repetition penalties make loops rarer; they do not end one. The guard reads
the streamed text, splits it into lines and sentences, and ends the
generation before the `limit`-th copy of one reaches the reader: while the
line being written could still become such a copy, its text is held back,
and it is let go as soon as it turns out different.
"""

from __future__ import annotations

import re

# Where a sentence ends: a line end, CJK full stops and marks, or an ASCII one
# followed by a space (so "3.5" and "e.g." inside a line do not split it).
_CJK_ENDS = frozenset("\n。！？；")
_ASCII_ENDS = frozenset(".!?;")
# A list marker or heading mark is not part of what a line says: loops often
# number their copies ("1. 你好", "2. 你好").
_MARKER = re.compile(r"^\s*(?:[-*+>#]+\s*|\d+\s*[.)、．]\s*|[（(]\d+[)）]\s*)*")
_SPACE = re.compile(r"\s+")


_WIDE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _key(segment: str) -> str:
    return _SPACE.sub(" ", _MARKER.sub("", segment)).strip()


def _weight(key: str) -> int:
    """Length in Latin letters' worth: a CJK character says about as much as two."""
    return len(key) + len(_WIDE.findall(key))


class LoopGuard:
    """Feed it each piece of streamed text; it says what to pass on, and when to stop."""

    def __init__(self, limit: int = 3, min_chars: int = 4) -> None:
        self._limit = limit
        self._min_chars = min_chars
        self._seen: dict[str, int] = {}
        self._line = ""   # the sentence being written
        self._held = ""   # its text not yet passed on
        self.stopped = False

    def feed(self, text: str) -> str | None:
        """The text to pass on now ('' while a likely copy is held back), or None to stop."""
        if self.stopped:
            return None
        out: list[str] = []
        for char in text:
            ended = self._line[-1:] in _ASCII_ENDS and char.isspace()
            if ended:
                if self._complete():
                    return None
                out.append(self._release())
            self._line += char
            self._held += char
            if char in _CJK_ENDS and self._complete():
                return None
            if char in _CJK_ENDS:
                out.append(self._release())
        if not self._suspect():
            out.append(self._release())
        return "".join(out)

    def flush(self) -> str:
        """What is still held back, at the end of a generation the guard did not stop."""
        return self._release()

    def _release(self) -> str:
        held, self._held = self._held, ""
        return held

    def _complete(self) -> bool:
        """A sentence ended: count it; True when this is its `limit`-th copy."""
        key = _key(self._line)
        self._line = ""
        if _weight(key) < self._min_chars:
            return False
        count = self._seen.get(key, 0) + 1
        self._seen[key] = count
        if count >= self._limit:
            self.stopped = True
            self._held = ""
            return True
        return False

    def _suspect(self) -> bool:
        """Could the sentence being written still become a `limit`-th copy?"""
        key = _key(self._line)
        if not key:
            return False
        return any(count == self._limit - 1 and seen.startswith(key)
                   for seen, count in self._seen.items())
