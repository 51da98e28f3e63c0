"""A prompt's `{{name}}` variables and a try's messages (`service/variables.py`), one definition
shared with the page (`static/variables.js`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from promptcast.errors import InvalidField
from promptcast.providers.base import Message
from promptcast.service.variables import fill, filled, try_messages, variables

STATIC = Path(__file__).resolve().parent.parent / "src" / "promptcast" / "static"
TEXTS = ["{{a}} {{ b }} {{a}} {{退款期限}} {x} {{1x}} {{ two words }} {{bad\nname}} {{}}",
         "no variables at all", "{{{triple}}} and {{nested {{inner}} }}"]


@pytest.mark.parametrize("text", TEXTS)
def test_python_finds_the_variables_the_page_finds(text: str) -> None:
    script = ("import { extractVariables } from './variables.js';"
              f"console.log(JSON.stringify(extractVariables({json.dumps(text)})));")
    page = subprocess.run(["node", "--input-type=module", "-e", script], cwd=STATIC,
                          capture_output=True, text=True, check=True).stdout
    assert variables(text) == json.loads(page)


def test_a_variable_without_a_value_is_left_or_refused_by_name() -> None:
    assert fill("{{a}} and {{b}}", {"a": "1"}) == "1 and {{b}}"
    with pytest.raises(InvalidField) as refused:
        filled("{{a}} and {{b}}", {"a": "1"}, "variables")
    assert refused.value.field == "variables" and "{{b}}" in refused.value.message


def test_a_try_is_the_prompt_the_opening_then_the_conversation() -> None:
    turns = (Message("user", "在吗"), Message("assistant", "在的"), Message("user", "退款"))
    assert [m.role for m in try_messages("system", turns, "您好！")] == [
        "system", "assistant", "user", "assistant", "user"]
    assert try_messages("s", turns[:1]) == (Message("system", "s"), turns[0])
