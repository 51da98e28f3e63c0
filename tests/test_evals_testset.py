"""Test cases and test-set files: what is accepted, and errors that name the line and the key;
the shipped JSON Schema agrees with the parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from promptcast.evals.cases import CaseError, case_json, parse_case
from promptcast.evals.testset import SCHEMA_PATH, TestSetError, format_of, load, parse

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_the_minimal_line_is_a_message() -> None:
    [case] = parse('{"message": "Where is my order?"}\n', "jsonl", max_case_chars=100).cases
    assert case.message == "Where is my order?" and not case.expect.has_rules


def test_expectations_are_top_level_keys() -> None:
    case = parse_case({"message": "m", "contains": ["refund", "days"], "not_contains": "as an AI",
                       "regex": r"\d+", "max_chars": 80, "language": "zh",
                       "starts_with_opening": True, "rubric": "be kind"}, max_chars=1000)
    expect = case.expect
    assert expect.contains == ("refund", "days") and expect.not_contains == ("as an AI",)
    assert expect.regex[0].pattern == r"\d+" and expect.max_chars == 80
    assert expect.language == "zh" and expect.starts_with_opening and expect.rubric == "be kind"


@pytest.mark.parametrize(("text", "error"), [
    ('{"message": "a"}\n{"message": 1}\n', "line 2: `message` must be a string, not a number"),
    ('{"message": "a"}\n\n{"message": "b",}\n', "line 3: not valid JSON"),
    ('{"message": "a", "contain": "x"}\n', "line 1: unknown key(s) ['contain']"),
    ('{"message": "a", "conversation": []}\n', "line 1: a case needs `message`"),
    ('{"conversation": [{"role": "assistant", "content": "hi"}]}\n',
     "line 1: `conversation` must end with the customer's (user) turn"),
    ('{"message": "a", "language": "klingon"}\n', "line 1: `language` must be one of zh,"),
    ('{"message": "a", "regex": "(["}\n', "line 1: `regex` is not a valid regular expression"),
    ('{"message": "a", "not_contains": []}\n', "line 1: `not_contains` must be a string or"),
    ('[1, 2]\n', "line 1: a case must be an object, not a list"),
    ("\n\n", "the test set has no case"),
])
def test_a_malformed_jsonl_file_gets_its_line_and_problem(text: str, error: str) -> None:
    with pytest.raises(TestSetError) as caught:
        parse(text, "jsonl", max_case_chars=1000, source="cases.jsonl")
    assert f"cases.jsonl: {error}" in str(caught.value)


@pytest.mark.parametrize(("text", "error"), [
    ("- message: a\n- message: b\n  max_chars: lots\n",
     "line 3: `max_chars` must be a positive whole number"),
    ("cases:\n  - message: a\n  - message: b\n    contains:\n      - ok\n      - 7\n",
     "line 6: `contains[1]` must be a string, not a number"),
    ("cases:\n  - message: a\n    conversation:\n      - {role: user, content: x}\n",
     "line 2: a case needs `message`"),
    ("- message: [a\n", "line 2: not valid YAML"),
    ("name: x\n", "line 1: a test set mapping needs `cases`"),
    ("title: x\ncases: []\n", "line 1: unknown key(s) ['title']"),
    ("vars:\n  shop: [a]\ncases:\n  - message: a\n", "line 2: `vars.shop` must be a string"),
    ("- message: no\n", "line 1: `message` must be a string, not a boolean"),
])
def test_a_malformed_yaml_file_gets_its_line_and_problem(text: str, error: str) -> None:
    with pytest.raises(TestSetError) as caught:
        parse(text, "yaml", max_case_chars=1000, source="set.yaml")
    assert f"set.yaml: {error}" in str(caught.value)


def test_a_yaml_set_gives_every_case_its_vars_and_opening() -> None:
    testset = parse("vars:\n  refund_window: 7\nopening: 您好！\ncases:\n  - message: 退款？\n",
                    "yaml", max_case_chars=1000)
    assert testset.vars == {"refund_window": "7"} and testset.opening == "您好！"


def test_a_case_over_its_size_cap_is_refused() -> None:
    with pytest.raises(CaseError, match="holds 11 characters of text; the limit is 10"):
        parse_case({"message": "x" * 6, "rubric": "y" * 5}, max_chars=10)


def test_formats_come_from_the_suffix() -> None:
    assert [format_of(Path(p)) for p in ("a.jsonl", "b.YAML", "c.yml", "d.json")] == [
        "jsonl", "yaml", "yaml", "yaml"]
    with pytest.raises(TestSetError, match=r"use \.jsonl, \.yaml, \.yml or \.json"):
        format_of(Path("cases.csv"))


@pytest.mark.parametrize("name", ["zh-ecommerce.yaml", "en-ecommerce.jsonl"])
def test_the_example_sets_are_valid_and_cover_what_they_promise(name: str) -> None:
    path = ROOT / "examples" / "testsets" / name
    testset = load(path, max_case_chars=8000)
    assert 15 <= len(testset.cases) <= 20
    ids = " ".join(case.id or "" for case in testset.cases)
    for topic in ("refund", "shipping", "out-of-scope", "injection", "abusive", "placeholder"):
        assert topic in ids, topic
    text = path.read_text(encoding="utf-8")
    if name.endswith(".jsonl"):
        documents: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        documents = yaml.safe_load(text)
    jsonschema.validate(documents, SCHEMA)


CASES_BOTH_ACCEPT = [
    {"message": "hi"},
    {"id": 7, "conversation": [{"role": "user", "content": "a"},
                               {"role": "assistant", "content": "b"},
                               {"role": "user", "content": "c"}]},
    {"message": "hi", "vars": {"x": 1, "y": "z"}, "contains": ["a", "b"], "regex": "a+",
     "not_contains": "c", "max_chars": 3, "language": "en", "starts_with_opening": False,
     "rubric": "r", "opening": "o"},
]
CASES_BOTH_REFUSE = [
    {}, {"message": "a", "conversation": [{"role": "user", "content": "b"}]},
    {"message": "a", "extra": 1}, {"message": 3}, {"message": "a", "contains": []},
    {"message": "a", "max_chars": 0}, {"message": "a", "language": "xx"},
    {"message": "a", "starts_with_opening": "yes"}, {"message": "a", "vars": {"x": [1]}},
    {"conversation": [{"role": "system", "content": "x"}]},
    {"conversation": [{"role": "user", "content": "x", "name": "n"}]},
]


@pytest.mark.parametrize("case", CASES_BOTH_ACCEPT)
def test_the_schema_and_the_parser_accept_the_same_cases(case: dict[str, Any]) -> None:
    jsonschema.validate([case], SCHEMA)
    parsed = parse_case(case, max_chars=1000)
    # What an export writes back is the same case again.
    assert parse_case(case_json(parsed), max_chars=1000) == parsed


@pytest.mark.parametrize("case", CASES_BOTH_REFUSE)
def test_the_schema_and_the_parser_refuse_the_same_cases(case: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([case], SCHEMA)
    with pytest.raises(CaseError):
        parse_case(case, max_chars=1000)
