"""A test case: what the customer says, the values of the prompt's variables, what to expect.

One validator for every way cases arrive (a JSONL line, a YAML item, the
`cases` of a POST /eval body); each error names the key it is about, and the
caller adds where the case came from (`testset.py`: a file's line; the route:
`cases[3]`). The JSON Schema shipped beside it (`testset.schema.json`)
describes the same rules for editors and other tools.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptcast.providers.base import Message
from promptcast.service.language import NAMES

RULE_KINDS = ("contains", "not_contains", "regex", "max_chars", "language",
              "starts_with_opening")
KEYS = frozenset({"id", "message", "conversation", "vars", "opening", "rubric", *RULE_KINDS})
MAX_TURNS = 40
MAX_REGEX_CHARS = 500
MAX_ID_CHARS = 200
_ROLES = ("user", "assistant")


class CaseError(ValueError):
    """A case is malformed; `key` is the key (or key path) at fault, if any."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a case's answer must satisfy (rules) and what the judge weighs (rubric)."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: tuple[re.Pattern[str], ...] = ()
    max_chars: int | None = None
    language: str | None = None
    starts_with_opening: bool = False
    rubric: str | None = None

    @property
    def has_rules(self) -> bool:
        """Whether any rule check applies (the rubric is the judge's, not a rule)."""
        return bool(self.contains or self.not_contains or self.regex or self.language
                    or self.max_chars is not None or self.starts_with_opening)


@dataclass(frozen=True, slots=True)
class Case:
    """One test case: the turns before the bot's answer, variable values, expectations."""

    turns: tuple[Message, ...]
    vars: Mapping[str, str] = field(default_factory=dict)
    opening: str | None = None
    expect: Expectations = field(default_factory=Expectations)
    id: str | None = None

    @property
    def message(self) -> str:
        """The customer's last message (what a table shows for the case)."""
        return self.turns[-1].content


def _text(value: Any, key: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CaseError(f"`{key}` must be a string, not {_kind(value)}", key)
    if not allow_empty and not value.strip():
        raise CaseError(f"`{key}` is empty", key)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {"int": "a number", "float": "a number", "list": "a list", "dict": "an object",
            "str": "a string"}.get(type(value).__name__, type(value).__name__)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    """A string or a non-empty list of non-empty strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise CaseError(f"`{key}` must be a string or a non-empty list of strings", key)
    for index, item in enumerate(items):
        where = key if isinstance(value, str) else f"{key}[{index}]"
        _text(item, where)
    return tuple(items)


def _turns(data: Mapping[str, Any]) -> tuple[Message, ...]:
    has_message, has_conversation = "message" in data, "conversation" in data
    if has_message == has_conversation:
        raise CaseError("a case needs `message` (the customer's message) or `conversation` "
                        "(a list of {role, content} turns ending with the customer's), not "
                        + ("both" if has_message else "neither"),
                        "message" if has_message else None)
    if has_message:
        return (Message("user", _text(data["message"], "message")),)
    conversation = data["conversation"]
    if not isinstance(conversation, list) or not conversation:
        raise CaseError("`conversation` must be a non-empty list of {role, content} turns",
                        "conversation")
    if len(conversation) > MAX_TURNS:
        raise CaseError(f"`conversation` has {len(conversation)} turns; the limit is {MAX_TURNS}",
                        "conversation")
    turns = []
    for index, turn in enumerate(conversation):
        where = f"conversation[{index}]"
        if not isinstance(turn, dict):
            raise CaseError(f"`{where}` must be an object with role and content", where)
        extra = set(turn) - {"role", "content"}
        if extra:
            raise CaseError(f"`{where}` has unknown key(s) {sorted(extra)}; a turn has role "
                            "and content", where)
        role = turn.get("role")
        if role not in _ROLES:
            raise CaseError(f"`{where}.role` must be user or assistant, not {role!r}",
                            f"{where}.role")
        turns.append(Message(role, _text(turn.get("content"), f"{where}.content")))
    if turns[-1].role != "user":
        raise CaseError("`conversation` must end with the customer's (user) turn: the bot "
                        "answers it", f"conversation[{len(turns) - 1}].role")
    return tuple(turns)


def _vars(value: Any, key: str = "vars") -> dict[str, str]:
    if not isinstance(value, dict):
        raise CaseError(f"`{key}` must be an object of name: value", key)
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise CaseError(f"`{key}` names must be non-empty strings", key)
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise CaseError(f"`{key}.{name}` must be a string or a number, not {_kind(item)}",
                            f"{key}.{name}")
        out[name] = item if isinstance(item, str) else str(item)
    return out


def parse_vars(value: Any, key: str = "vars") -> dict[str, str]:
    """A `vars` object (name: string or number), as strings."""
    return _vars(value, key)


def _regexes(value: Any) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for index, source in enumerate(_strings(value, "regex")):
        where = "regex" if isinstance(value, str) else f"regex[{index}]"
        if len(source) > MAX_REGEX_CHARS:
            raise CaseError(f"`{where}` is {len(source)} characters; the limit is "
                            f"{MAX_REGEX_CHARS}", where)
        try:
            patterns.append(re.compile(source))
        except re.error as exc:
            raise CaseError(f"`{where}` is not a valid regular expression: {exc}", where) from None
    return tuple(patterns)


def whole(value: Any) -> Any:
    """`3.0` as `3`: JSON does not tell integers from integral floats, and neither do we."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _expectations(data: Mapping[str, Any]) -> Expectations:
    max_chars = whole(data.get("max_chars"))
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int)
                                  or max_chars < 1):
        raise CaseError("`max_chars` must be a positive whole number", "max_chars")
    language = data.get("language")
    if language is not None and language not in NAMES:
        raise CaseError(f"`language` must be one of {', '.join(NAMES)}, not {language!r}",
                        "language")
    opening = data.get("starts_with_opening", False)
    if not isinstance(opening, bool):
        raise CaseError("`starts_with_opening` must be true or false", "starts_with_opening")
    return Expectations(
        contains=_strings(data["contains"], "contains") if "contains" in data else (),
        not_contains=(_strings(data["not_contains"], "not_contains")
                      if "not_contains" in data else ()),
        regex=_regexes(data["regex"]) if "regex" in data else (),
        max_chars=max_chars,
        language=language,
        starts_with_opening=opening,
        rubric=_text(data["rubric"], "rubric") if data.get("rubric") is not None else None,
    )


def parse_case(data: Any, *, max_chars: int) -> Case:
    """Validate one case; raises `CaseError` naming the key at fault."""
    if not isinstance(data, dict):
        raise CaseError(f"a case must be an object, not {_kind(data)}")
    unknown = sorted(set(data) - KEYS, key=str)
    if unknown:
        raise CaseError(f"unknown key(s) {unknown}; a case has {', '.join(sorted(KEYS))}",
                        str(unknown[0]))
    turns = _turns(data)
    case_id = data.get("id")
    if case_id is not None:
        if isinstance(case_id, int) and not isinstance(case_id, bool):
            case_id = str(case_id)
        case_id = _text(case_id, "id")
        if len(case_id) > MAX_ID_CHARS:
            raise CaseError(f"`id` is longer than {MAX_ID_CHARS} characters", "id")
    opening = data.get("opening")
    if opening is not None:
        opening = _text(opening, "opening")
    case = Case(turns=turns, vars=_vars(data.get("vars", {})), opening=opening,
                expect=_expectations(data), id=case_id)
    size = case_chars(case)
    if size > max_chars:
        raise CaseError(f"the case holds {size} characters of text; the limit is {max_chars}")
    return case


def case_chars(case: Case) -> int:
    """How much text a case holds: what its size cap counts."""
    expect = case.expect
    return (sum(len(turn.content) for turn in case.turns) + len(case.opening or "")
            + sum(len(k) + len(v) for k, v in case.vars.items())
            + sum(map(len, expect.contains)) + sum(map(len, expect.not_contains))
            + sum(len(p.pattern) for p in expect.regex) + len(expect.rubric or ""))


def case_json(case: Case) -> dict[str, Any]:
    """The case in the test-set format (what an export writes back)."""
    out: dict[str, Any] = {}
    if case.id is not None:
        out["id"] = case.id
    if len(case.turns) == 1:
        out["message"] = case.turns[0].content
    else:
        out["conversation"] = [turn.as_dict() for turn in case.turns]
    if case.vars:
        out["vars"] = dict(case.vars)
    if case.opening is not None:
        out["opening"] = case.opening
    expect = case.expect
    for key in ("contains", "not_contains"):
        values = getattr(expect, key)
        if values:
            out[key] = values[0] if len(values) == 1 else list(values)
    if expect.regex:
        patterns = [p.pattern for p in expect.regex]
        out["regex"] = patterns[0] if len(patterns) == 1 else patterns
    if expect.max_chars is not None:
        out["max_chars"] = expect.max_chars
    if expect.language is not None:
        out["language"] = expect.language
    if expect.starts_with_opening:
        out["starts_with_opening"] = True
    if expect.rubric is not None:
        out["rubric"] = expect.rubric
    return out
