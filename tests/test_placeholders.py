"""Template slots found in a prompt: the cases the page's review reads too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptcast.service.placeholders import find_placeholders

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "placeholder_cases.json").read_text("utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:30] for c in CASES])
def test_placeholder_cases_shared_with_the_page(case: dict[str, Any]) -> None:
    assert find_placeholders(case["text"]) == case["slots"]


def test_spacing_inside_braces_is_one_slot() -> None:
    assert find_placeholders("{{ name }} and {{name}}") == ["{{ name }}"]
