"""Rule checks: each expectation of a case, applied to an answer, gives pass or fail and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptcast.evals.cases import Expectations
from promptcast.service.language import detect_language

_QUOTE_CHARS = 60


@dataclass(frozen=True, slots=True)
class Check:
    """One rule's outcome: `kind` is the expectation's key."""

    kind: str
    passed: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pass": self.passed, "reason": self.reason}


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "…")


def _normalized(text: str) -> str:
    return " ".join(text.split())


def run_checks(answer: str, expect: Expectations, opening: str | None) -> list[Check]:
    """Every rule of `expect` applied to `answer`, in the order the format lists them."""
    checks: list[Check] = []
    folded = answer.casefold()
    for needle in expect.contains:
        found = needle.casefold() in folded
        checks.append(Check("contains", found, f"{'contains' if found else 'does not contain'} "
                                               f"{_quote(needle)}"))
    for needle in expect.not_contains:
        found = needle.casefold() in folded
        checks.append(Check("not_contains", not found,
                            f"{'contains' if found else 'does not contain'} {_quote(needle)}"))
    for pattern in expect.regex:
        match = pattern.search(answer)
        checks.append(Check("regex", match is not None,
                            f"matches /{pattern.pattern}/ at {_quote(match.group(0))}"
                            if match is not None else f"nothing matches /{pattern.pattern}/"))
    if expect.max_chars is not None:
        length = len(answer.strip())
        checks.append(Check("max_chars", length <= expect.max_chars,
                            f"{length} characters; the limit is {expect.max_chars}"))
    if expect.language is not None:
        found_language = detect_language(answer) or None
        checks.append(Check(
            "language", found_language == expect.language,
            f"written in {found_language}" + (
                "" if found_language == expect.language else f", not {expect.language}")
            if found_language is not None
            else f"the language cannot be told from the answer (expected {expect.language})",
        ))
    if expect.starts_with_opening:
        wanted = _normalized(opening or "")
        starts = bool(wanted) and _normalized(answer).startswith(wanted)
        checks.append(Check("starts_with_opening", starts,
                            "starts with the opening line" if starts
                            else f"does not start with {_quote(wanted)}"))
    return checks
