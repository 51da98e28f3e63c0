"""The messages of one cell: the prompt as the system message, the opening, the customer's turns.

The same convention as trying a prompt by hand (issue 19): `system` is the
prompt with its `{{name}}` placeholders filled, `assistant` is the opening line
if there is one, then the conversation. A case that checks
`starts_with_opening` gets no opening turn: it tests that the bot says it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from promptcast.evals.cases import Case
from promptcast.providers.base import Message

PLACEHOLDER = re.compile(r"\{\{\s*([^\W\d][\w.-]*)\s*\}\}")


def placeholders(text: str) -> list[str]:
    """The `{{name}}` placeholders of `text`, each once, in order."""
    return list(dict.fromkeys(match.group(1) for match in PLACEHOLDER.finditer(text)))


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `{{name}}` that has a value replaced by it; others left as they are."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def cell_messages(prompt: str, case: Case, values: Mapping[str, str],
                  opening: str | None) -> tuple[Message, ...]:
    """The chat messages that ask the bot (`prompt`) to answer `case`."""
    messages = [Message("system", fill(prompt, values))]
    if opening and not case.expect.starts_with_opening:
        messages.append(Message("assistant", fill(opening, values)))
    messages.extend(case.turns)
    return tuple(messages)
