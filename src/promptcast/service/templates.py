"""Meta-prompt templates: one text with named slots, rendered into the system and user messages.

    <system message, with {slots}>
    {?opening}a line kept only when `opening` has a value
    {!opening}a line kept only when it has none
    [user]
    <user message, with {slots}>

Slots: {prompt} (required), {opening}, {previous}, {feedback}, {target_chars}; the
names of the tags that quote them, {prompt_tag}, {opening_tag}, {previous_tag},
{feedback_tag}: tags no quoted text contains, so quoted material can never end its
own quote; and two lines the code words from the prompt itself, {language_rule}
(keep the prompt's language, named when it is sure of it) and {placeholder_note}
(the prompt's own placeholders, or nothing). Any other brace (`{{placeholder}}`,
JSON) is text. In the system part a dropped line takes its paragraph's blank line
with it. A template is worded in English or Chinese (its `language`): the two
computed lines follow it.

The built-in templates are not written here: they are derived from the code's
own meta-prompts (prompts.py) by rendering them with marker values and turning
the markers back into slots, so rendering a built-in gives exactly the messages
`build_messages` sends (tests/test_templates.py holds that for every mode,
language and option).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache

from promptcast.errors import InvalidField
from promptcast.providers.base import Message
from promptcast.service.prompts import (
    Mode,
    build_messages,
    language_rule,
    placeholder_note,
    quote_tags,
)

USER_MARK = "[user]"
VALUE_SLOTS = ("prompt", "opening", "previous", "feedback", "target_chars")
TAG_SLOTS = ("prompt_tag", "opening_tag", "previous_tag", "feedback_tag")
COMPUTED_SLOTS = ("language_rule", "placeholder_note")
SLOTS = VALUE_SLOTS + TAG_SLOTS + COMPUTED_SLOTS
REQUIRED = ("prompt",)
LANGUAGES = ("en", "zh")

_SLOT = re.compile(r"(?<!\{)\{(" + "|".join(SLOTS) + r")\}(?!\})")
_CONDITION = re.compile(r"^\{([?!])(" + "|".join(VALUE_SLOTS) + r")\}")


@dataclass(frozen=True, slots=True)
class Values:
    """What a template is rendered with."""

    prompt: str
    opening: str | None = None
    previous: str | None = None
    feedback: str | None = None
    target_chars: int | None = None

    def slots(self, wording: str) -> dict[str, str]:
        """Every slot's text, the computed lines worded in `wording` (`en` or `zh`)."""
        tags = quote_tags(self.prompt, opening=self.opening, previous=self.previous,
                          feedback=self.feedback)
        revising = self.previous is not None and self.feedback is not None
        return {
            "prompt": self.prompt, "opening": self.opening or "",
            "previous": self.previous or "", "feedback": self.feedback or "",
            "target_chars": "" if self.target_chars is None else str(self.target_chars),
            "prompt_tag": tags["p"], "opening_tag": tags["o"],
            "previous_tag": tags["r"], "feedback_tag": tags["f"],
            "language_rule": language_rule(self.prompt, wording, revising=revising),
            "placeholder_note": placeholder_note(self.prompt, wording),
        }


def wording(language: str | None) -> str:
    """The wording of a template's computed lines for its `language` tag: zh* or en."""
    return "zh" if (language or "").lower().startswith("zh") else "en"


def check(text: str, field: str = "text") -> None:
    """A 422 naming what is wrong with a template's text: the `[user]` line, a required slot."""
    if _split(text) is None:
        raise InvalidField(f"`{field}` needs a line `{USER_MARK}`: the system message above it, "
                           "the user message below", field=field)
    used = set(_SLOT.findall(text))
    for slot in REQUIRED:
        if slot not in used:
            raise InvalidField(f"`{field}` lacks the slot {{{slot}}}: without it the model "
                               "never sees the prompt", field=field)


def render(text: str, values: Values, language: str | None = "en") -> tuple[Message, ...]:
    """The system and user messages of template `text`, worded in `language`, with `values`."""
    parts = _split(text)
    if parts is None:
        raise InvalidField(f"the template has no `{USER_MARK}` line", field="template")
    system, user = parts
    slots = values.slots(wording(language))
    return (Message("system", _fill(system, slots, paragraphs=True)),
            Message("user", _fill(user, slots, paragraphs=False)))


def _split(text: str) -> tuple[str, str] | None:
    lines = text.split("\n")
    if USER_MARK not in lines:
        return None
    at = lines.index(USER_MARK)
    return "\n".join(lines[:at]), "\n".join(lines[at + 1:])


def _fill(part: str, slots: dict[str, str], *, paragraphs: bool) -> str:
    kept: list[str] = []
    for line in part.split("\n"):
        condition = _CONDITION.match(line)
        if condition is not None:
            wanted, slot = condition.groups()
            if bool(slots[slot]) != (wanted == "?"):
                if paragraphs and kept and kept[-1] == "":
                    kept.pop()  # the paragraph goes with its blank line
                continue
            line = line[condition.end():]
        kept.append(line)
    if paragraphs:
        while kept and kept[0] == "":
            kept.pop(0)
    # One pass, so a value is never searched for slots itself.
    return _SLOT.sub(lambda m: slots[m.group(1)], "\n".join(kept))


# ---------------------------------------------------------------- the built-ins


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    mode: str
    language: str
    text: str


# Marker values: text no meta-prompt contains, in the language each wording is chosen for.
# The prompt's has a placeholder, so its placeholder line is there to become a slot.
_MARKERS = {
    "en": {"prompt": "Zq9PromptMarker {{zq9slot}}", "opening": "Zq9OpeningMarker",
           "previous": "Zq9PreviousMarker", "feedback": "Zq9FeedbackMarker"},
    "zh": {"prompt": "哨兵提示词甲乙丙 {{zq9slot}}", "opening": "哨兵开场白甲乙丙",
           "previous": "哨兵改写稿甲乙丙", "feedback": "哨兵反馈甲乙丙"},
}
_TARGET_MARKER = 987_654_321
# The tags the markers are quoted in (no marker contains one), and each one's slot.
_TAG_SLOTS = {"prompt": "prompt_tag", "opening": "opening_tag", "rewrite": "previous_tag",
              "feedback": "feedback_tag"}


def _messages(mode: Mode, language: str, *, opening: bool, target: bool,
              revise: bool) -> tuple[str, str]:
    """`build_messages` for the markers, its computed lines already back to their slots."""
    marks = _MARKERS[language]
    system, user = build_messages(
        marks["prompt"], mode, opening=marks["opening"] if opening else None,
        target_chars=_TARGET_MARKER if target else None,
        previous=marks["previous"] if revise else None,
        feedback=marks["feedback"] if revise else None)
    computed = {language_rule(marks["prompt"], language, revising=revise): "{language_rule}",
                placeholder_note(marks["prompt"], language): "{placeholder_note}"}
    texts = []
    for text in (system.content, user.content):
        for line, slot in computed.items():
            text = text.replace(line, slot)
        texts.append(text)
    return texts[0], texts[1]


def _slotted(text: str, language: str) -> str:
    marks = _MARKERS[language]
    for tag, slot in _TAG_SLOTS.items():
        text = text.replace(f"<{tag}>", f"<{{{slot}}}>").replace(f"</{tag}>", f"</{{{slot}}}>")
    for base in ("prompt", "opening", "previous", "feedback"):
        text = text.replace(marks[base], f"{{{base}}}")
    return text.replace(str(_TARGET_MARKER), "{target_chars}")


def _merge(base: list[str], variants: dict[str, list[str]], every: list[str]) -> list[str]:
    """`base`'s pieces, with those each slot's variant adds (`{?slot}`) or drops (`{!slot}`).

    `every` is the variant with every slot on: where two slots add pieces at the
    same place, its order decides theirs.
    """
    added: dict[int, list[tuple[str, str]]] = {}
    dropped: dict[int, str] = {}
    for slot, pieces in variants.items():
        matcher = difflib.SequenceMatcher(a=base, b=pieces, autojunk=False)
        for op, a0, a1, b0, b1 in matcher.get_opcodes():
            if op in ("delete", "replace"):
                dropped.update(dict.fromkeys(range(a0, a1), f"{{!{slot}}}"))
            if op in ("insert", "replace"):
                # After what it replaces: "not this" first, then "this".
                added.setdefault(a1, []).extend((f"{{?{slot}}}", p) for p in pieces[b0:b1])
    out: list[str] = []
    for i in range(len(base) + 1):
        here = added.get(i, [])
        here.sort(key=lambda item: every.index(item[1]) if item[1] in every else len(every))
        out += [mark + piece for mark, piece in here]
        if i < len(base):
            out.append(dropped.get(i, "") + base[i])
    return out


def _derive(mode: Mode, language: str) -> str:
    """The template whose rendering is what `build_messages` sends for `mode` in `language`."""
    base = _messages(mode, language, opening=False, target=False, revise=False)
    every = _messages(mode, language, opening=True, target=True, revise=True)
    variants = {
        "opening": _messages(mode, language, opening=True, target=False, revise=False),
        "target_chars": _messages(mode, language, opening=False, target=True, revise=False),
        # Revising takes `previous` and `feedback` together: one condition for both.
        "previous": _messages(mode, language, opening=False, target=False, revise=True),
    }
    system = _merge(base[0].split("\n\n"),
                    {slot: v[0].split("\n\n") for slot, v in variants.items()},
                    every[0].split("\n\n"))
    user = _merge(base[1].split("\n"), {slot: v[1].split("\n") for slot, v in variants.items()},
                  every[1].split("\n"))
    lines: list[str] = []
    for paragraph in system:
        if lines:
            lines.append("")  # paragraphs apart; a dropped one takes its blank line along
        condition = _CONDITION.match(paragraph)
        mark = condition.group(0) if condition else ""
        body = paragraph[len(mark):].split("\n")
        lines += [mark + line for line in body]  # each line of a conditional paragraph
    text = "\n".join(lines) + f"\n{USER_MARK}\n" + "\n".join(user)
    return _slotted(text, language)


@cache
def builtins() -> dict[str, Builtin]:
    """The read-only templates: `<mode>.<language>`, one per mode and wording language."""
    found: dict[str, Builtin] = {}
    for mode in Mode:
        for language in LANGUAGES:
            name = f"{mode.value}.{language}"
            found[name] = Builtin(name, mode.value, language, _derive(mode, language))
    return found
