"""Test-set files: JSONL (one case a line) or YAML (a list of cases, or a mapping with `cases`).

Every error names the file's line and what is wrong there, down to the key
of a YAML case when that is where the fault is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from promptcast.evals.cases import Case, CaseError, parse_case, parse_vars

FORMATS = ("jsonl", "yaml")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".yaml": "yaml", ".yml": "yaml",
            ".json": "yaml"}  # a JSON document is YAML, and its errors keep their lines
_SET_KEYS = frozenset({"name", "description", "vars", "opening", "cases"})
SCHEMA_PATH = Path(__file__).with_name("testset.schema.json")


class TestSetError(ValueError):
    """A test set cannot be read: the message names the line and the problem."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class TestSet:
    """The cases of a file, with what a YAML set may give every case (`vars`, `opening`)."""

    __test__ = False

    cases: tuple[Case, ...]
    vars: dict[str, str] = field(default_factory=dict)
    opening: str | None = None
    name: str | None = None


def format_of(path: Path) -> str:
    """The format a file's suffix says it is in."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TestSetError(f"{path.name}: cannot tell the format from the suffix "
                           f"{path.suffix or '(none)'}; use .jsonl, .yaml, .yml or .json")
    return fmt


def load(path: Path, *, max_case_chars: int) -> TestSet:
    """Read a test-set file; `TestSetError` names the line of anything malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TestSetError(f"{path}: cannot read it: {exc}") from None
    return parse(text, format_of(path), max_case_chars=max_case_chars, source=str(path))


def parse(text: str, fmt: str, *, max_case_chars: int, source: str = "test set") -> TestSet:
    """Parse a test set's text in `fmt` ("jsonl" or "yaml")."""
    if fmt == "jsonl":
        testset = _parse_jsonl(text, max_case_chars, source)
    elif fmt == "yaml":
        testset = _parse_yaml(text, max_case_chars, source)
    else:
        raise TestSetError(f"unknown test-set format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not testset.cases:
        raise TestSetError(f"{source}: the test set has no case")
    return testset


def _parse_jsonl(text: str, max_case_chars: int, source: str) -> TestSet:
    cases = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TestSetError(f"{source}: line {number}: not valid JSON: {exc.msg} "
                               f"(column {exc.colno})", number) from None
        try:
            cases.append(parse_case(data, max_chars=max_case_chars))
        except CaseError as exc:
            raise TestSetError(f"{source}: line {number}: {exc.message}", number) from None
    return TestSet(tuple(cases))


def _line_of(node: yaml.Node, key: str | None) -> int:
    """The line (from 1) of `key` ("vars.shop", "conversation[2].role") under `node`, or of
    as much of that path as exists; else of the node itself."""
    if key is not None and isinstance(node, yaml.MappingNode):
        head, _, rest = key.partition(".")
        name, _, index = head.partition("[")
        for key_node, value_node in node.value:
            if key_node.value != name:
                continue
            target: yaml.Node = value_node
            if index:
                position = int(index.rstrip("]"))
                if not isinstance(value_node, yaml.SequenceNode) or position >= len(
                        value_node.value):
                    return int(key_node.start_mark.line) + 1
                target = value_node.value[position]
            if rest:
                return _line_of(target, rest)
            return int((target if index else key_node).start_mark.line) + 1
    return int(node.start_mark.line) + 1


def _parse_yaml(text: str, max_case_chars: int, source: str) -> TestSet:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"line {line}: " if line is not None else ""
        raise TestSetError(f"{source}: {where}not valid YAML: {exc.problem or exc}",
                           line) from None
    except yaml.YAMLError as exc:
        raise TestSetError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if root is None:
        raise TestSetError(f"{source}: the file is empty")
    items_node: yaml.Node = root
    set_vars: dict[str, str] = {}
    opening = name = None
    if isinstance(data, dict):
        unknown = sorted(set(data) - _SET_KEYS, key=str)
        if unknown:
            raise TestSetError(f"{source}: line {_line_of(root, str(unknown[0]))}: unknown key(s) "
                               f"{unknown}; a test set has {', '.join(sorted(_SET_KEYS))}")
        if "cases" not in data:
            raise TestSetError(f"{source}: line 1: a test set mapping needs `cases`, a list")
        try:
            set_vars = parse_vars(data.get("vars", {}))
        except CaseError as exc:
            raise TestSetError(f"{source}: line {_line_of(root, exc.key)}: {exc.message}") from None
        opening, name = data.get("opening"), data.get("name")
        for key, value in (("opening", opening), ("name", name)):
            if value is not None and not isinstance(value, str):
                raise TestSetError(f"{source}: line {_line_of(root, key)}: `{key}` must be a "
                                   "string")
        items_node = next(v for k, v in root.value if k.value == "cases")
        data = data["cases"]
    if not isinstance(data, list) or not isinstance(items_node, yaml.SequenceNode):
        raise TestSetError(f"{source}: line {items_node.start_mark.line + 1}: expected a list "
                           "of cases")
    cases = []
    for item, node in zip(data, items_node.value, strict=True):
        try:
            cases.append(parse_case(item, max_chars=max_case_chars))
        except CaseError as exc:
            line = _line_of(node, exc.key)
            raise TestSetError(f"{source}: line {line}: {exc.message}", line) from None
    return TestSet(tuple(cases), set_vars, opening, name)
