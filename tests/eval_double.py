"""The scripted upstream of evaluation tests: answers by (prompt, case), and a scripted judge.

Each request to the double is answered from what it asks, not from the order
it arrives in, so a run with many cells in flight gets the same answers every
time:

- an answer request (its system message is the prompt under test) gets
  `answers[(prompt marker, customer message)]`, where the marker is the
  prompt's first line;
- a judge's score request gets `score(answer)`'s raw reply;
- a judge's pairwise request gets `verdict(answer_a, answer_b)`'s raw reply.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .upstream_double import Script, Seen

SCORE_MARK = "Score the answer from 0"
PAIR_MARK = "comparing two answers"


def _tag(text: str, name: str) -> str:
    match = re.search(rf"<{name}>\n(.*?)\n</{name}>", text, re.DOTALL)
    assert match is not None, (name, text)
    return match.group(1)


def reply(obj: object) -> str:
    """A judge reply: the JSON text of `obj`."""
    return json.dumps(obj, ensure_ascii=False)


def marked_score(answer: str) -> str:
    """A judge that reads the score an answer carries as `[score=N]`; `[garbled]` gets prose."""
    if "[garbled]" in answer:
        return "The answer is quite good, I would say 8 out of 10."
    match = re.search(r"\[score=(\d+)\]", answer)
    return reply({"score": int(match.group(1)) if match else 5, "reason": "scripted"})


def ranked_verdict(answer_a: str, answer_b: str) -> str:
    """A judge that prefers the higher `[rank=N]`; `[biased]` in either makes it always say A
    (a position bias: the two orders disagree); `[garbled]` gets an invalid reply."""
    if "[garbled]" in answer_a + answer_b:
        return "{winner: A}"
    if "[biased]" in answer_a + answer_b:
        return reply({"winner": "A", "reason": "the first one"})

    def rank(text: str) -> int:
        match = re.search(r"\[rank=(\d+)\]", text)
        return int(match.group(1)) if match else 0

    ra, rb = rank(answer_a), rank(answer_b)
    return reply({"winner": "A" if ra > rb else "B" if rb > ra else "tie",
                  "reason": "scripted"})


@dataclass
class EvalUpstream:
    """Call it with a request the double saw; it returns the script to play."""

    answers: dict[tuple[str, str], str]
    score: Callable[[str], str] = marked_score
    verdict: Callable[[str, str], str] = ranked_verdict
    gap: float = 0.0           # between an answer's chunks
    first_delay: float = 0.0   # before an answer's response starts
    # 429s before each answer goes through: (marker, message) -> how many left
    storms: dict[tuple[str, str], int] = field(default_factory=dict)
    retry_after: str = "0"
    hang: bool = False         # answers never end (for tests that stop a run)
    # An answer waits for its gate, if it has one, before its first byte of content.
    gates: dict[tuple[str, str], threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    judged: int = 0

    def __call__(self, seen: Seen) -> Script:
        messages = seen.messages()
        system = messages[0]["content"]
        if system.startswith("You are an impartial evaluator"):
            with self.lock:
                self.judged += 1
            user = messages[1]["content"]
            if PAIR_MARK in system:
                raw = self.verdict(_tag(user, "answer_a"), _tag(user, "answer_b"))
            else:
                raw = self.score(_tag(user, "answer"))
            return Script.chat([raw])
        key = (system.split("\n", 1)[0], messages[-1]["content"])
        with self.lock:
            left = self.storms.get(key, 0)
            if left:
                self.storms[key] = left - 1
        if left:
            return Script.error(429, "slow down", retry_after=self.retry_after)
        text = self.answers[key]
        if self.hang:
            return Script.chat([text], then="hang")
        # Two pieces, so each answer is a real multi-chunk stream.
        half = len(text) // 2
        gate = self.gates.get(key)
        return Script.chat([*([gate] if gate is not None else []), text[:half], text[half:]],
                           gap=self.gap, first_delay=self.first_delay)
