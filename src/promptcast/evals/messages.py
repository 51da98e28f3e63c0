"""The messages of one cell: the prompt as the system message, the opening, the customer's turns.

The same convention as trying a prompt by hand (issue 19): `system` is the
prompt with its `{{name}}` placeholders filled, `assistant` is the opening line
if there is one, then the conversation. A case that checks
`starts_with_opening` gets no opening turn: it tests that the bot says it.
"""

from __future__ import annotations

from collections.abc import Mapping

from promptcast.evals.cases import Case
from promptcast.providers.base import Message
from promptcast.service.variables import fill, try_messages
from promptcast.service.variables import variables as placeholders

__all__ = ["cell_messages", "fill", "placeholders"]


def cell_messages(prompt: str, case: Case, values: Mapping[str, str],
                  opening: str | None) -> tuple[Message, ...]:
    """The chat messages that ask the bot (`prompt`) to answer `case`."""
    opening = fill(opening, values) if opening and not case.expect.starts_with_opening else None
    return try_messages(fill(prompt, values), case.turns, opening)
