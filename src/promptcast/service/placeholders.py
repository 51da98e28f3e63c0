"""Template slots in a prompt: `{{name}}`, `{name}`, `${name}`, `%s`, `%(name)s`, `[NAME]`.

A rewrite must keep them as written, so the meta-prompt names the ones it
finds. The page's review finds the same ones (static/placeholders.js); both
read the cases in tests/placeholder_cases.json.
"""

from __future__ import annotations

import re

# Order matters: `{{x}}` before `{x}`, `%(x)s` before `%s`. Character classes
# are spelled out (no \w), so this and the page's JavaScript agree exactly.
_SLOT = re.compile(
    r"\{\{[ \t]*(?P<mustache>[^{}\n]*?)[ \t]*\}\}"
    r"|\$\{(?P<dollar>[A-Za-z_][A-Za-z0-9_.]*)\}"
    r"|%\((?P<named>[A-Za-z_][A-Za-z0-9_]*)\)[sdif]"
    r"|(?<![{$A-Za-z0-9_])\{(?P<brace>[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_\u4e00-\u9fff.-]{0,39})\}"
    r"(?!\})"
    r"|(?<![%A-Za-z0-9_])%(?P<printf>[sdif])(?![A-Za-z])"
    r"|(?<![\]!A-Za-z0-9_])\[(?P<bracket>[^\[\]\n]{2,40})\](?![(:\[])"
)
# A bracketed word is a slot only when it looks like one: ALL CAPS, snake_case,
# or a short Chinese noun. "[optional]" or "[see below]" are prose.
_BRACKET_SLOT = re.compile(
    r"[A-Z][A-Z0-9_ -]*[A-Z0-9]|[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[\u4e00-\u9fff]{2,12}"
)
_SPACES = re.compile(r"[ \t]+")


def find_placeholders(text: str) -> list[str]:
    """The template slots of `text` as written, in order of first appearance, without repeats."""
    found: dict[str, str] = {}
    for match in _SLOT.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        name = match.group(kind)
        if kind == "bracket" and not _BRACKET_SLOT.fullmatch(name):
            continue
        if kind == "mustache" and not name.strip():
            continue
        found.setdefault(f"{kind}:{_SPACES.sub(' ', name)}", match.group(0))
    return list(found.values())
