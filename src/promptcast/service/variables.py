"""A prompt's `{{name}}` variables, and the messages a bot is tried with (issue 19's convention).

One definition for every caller that runs a prompt as a bot: the page
(`static/variables.js` holds the same pattern), `promptcast try`, an
evaluation's cells and the MCP server's tools. A try sends `system` = the
prompt with its variables filled, `assistant` = the opening line if there is
one, then the conversation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from promptcast.errors import InvalidField
from promptcast.providers.base import Message

# `{{name}}`, spaces allowed inside the braces and in the name (as the page has it).
VARIABLE = re.compile(r"\{\{\s*([^{}\n]+?)\s*\}\}")


def variables(text: str) -> list[str]:
    """The variable names of `text`, each once, in order of first appearance."""
    return list(dict.fromkeys(match.group(1) for match in VARIABLE.finditer(text)))


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `{{name}}` that has a value replaced by it; others left as written."""
    return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def filled(text: str, values: Mapping[str, str], field: str) -> str:
    """`fill`, refusing (a 422 naming `field`) a variable that has no value."""
    missing = [name for name in variables(text) if name not in values]
    if missing:
        listed = ", ".join("{{" + name + "}}" for name in missing)
        raise InvalidField(f"the prompt has unfilled variables: {listed}; give each a value in "
                           f"`{field}`", field=field)
    return fill(text, values)


def try_messages(system: str, turns: Iterable[Message], opening: str | None = None
                 ) -> tuple[Message, ...]:
    """The messages of a try: `system` (filled already), the opening, then the `turns`."""
    opened = (Message("assistant", opening),) if opening else ()
    return (Message("system", system), *opened, *turns)
