"""Which language a prompt is written in, told apart by script, then by its commonest words.

The meta-prompt must keep the original's language whatever it is; naming that
language helps small models, but only a confident guess is named. An unsure
guess (`""`) gets the generic rule, "the language of the original", which is
right for every language.
"""

from __future__ import annotations

import re

# Fenced and inline code is not prose: its keywords are English whatever the prompt's language.
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)

_SCRIPTS: dict[str, re.Pattern[str]] = {
    "han": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "kana": re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"),
    "hangul": re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "greek": re.compile(r"[\u0370-\u03ff]"),
    "arabic": re.compile(r"[\u0600-\u06ff]"),
    "hebrew": re.compile(r"[\u0590-\u05ff]"),
    "thai": re.compile(r"[\u0e00-\u0e7f]"),
    "devanagari": re.compile(r"[\u0900-\u097f]"),
}
# A Han, kana or Hangul character carries about a word; an alphabetic word is ~5 letters.
_WEIGHT = {"han": 5, "kana": 5, "hangul": 3}
_ONE_LANGUAGE = {"hangul": "ko", "greek": "el", "arabic": "ar", "hebrew": "he", "thai": "th",
                 "devanagari": "hi"}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words common in one language and rare in the others: a prompt of a
# few sentences hits several of its own language's.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words("the and you are is of to with for your be this that it not do will "
                    "should must if or always never when what how"),
    "fr": _words("le les des du une et est vous nous pour avec dans sur pas ne qui au aux "
                    "ce cette il elle sont être votre vos toujours jamais"),
    "es": _words("el los las y del al eres usted con para por su sus muy como pero cuando "
                    "siempre nunca debes tienes está"),
    "de": _words("der die das und ist du bist sie nicht mit für ein eine den dem zu auf "
                    "von bitte immer niemals wenn"),
    "pt": _words("o os as e do da dos das você é não com um uma em seu sua ao sempre "
                    "nunca quando"),
    "it": _words("il lo gli di della che sei non con per sono suo sua sempre mai quando "
                    "del alla"),
}
_FRENCH_ELISIONS = frozenset({"l", "d", "qu", "j", "n", "s", "c", "m", "t"})
_WORD = re.compile(r"[a-zà-öø-ÿ]+(?:'[a-zà-öø-ÿ]+)?")

NAMES = {
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "en": "English", "fr": "French",
    "es": "Spanish", "de": "German", "pt": "Portuguese", "it": "Italian", "ru": "Russian",
    "uk": "Ukrainian", "el": "Greek", "ar": "Arabic", "he": "Hebrew", "th": "Thai",
    "hi": "Hindi",
}


def detect_language(text: str) -> str:
    """The language code of `text`'s prose (a key of NAMES), or "" when it cannot tell."""
    prose = _CODE.sub(" ", text)
    if not prose.strip():
        prose = text
    counts = {name: len(pattern.findall(prose)) for name, pattern in _SCRIPTS.items()}
    weighted = {name: n * _WEIGHT.get(name, 1) for name, n in counts.items()}
    # Kana and Han together are Japanese: judge them as one script first.
    cjk = weighted["han"] + weighted["kana"]
    top = max(weighted, key=lambda name: weighted[name])
    if cjk and cjk >= weighted[top] and cjk >= weighted["latin"]:
        # A Japanese text has kana between its kanji; a Chinese one has at most a stray few.
        return "ja" if counts["kana"] * 10 >= counts["han"] + counts["kana"] else "zh"
    if not weighted[top]:
        return ""
    if top in _ONE_LANGUAGE:
        return _ONE_LANGUAGE[top]
    if top == "cyrillic":
        return _cyrillic(prose)
    if top == "latin":
        return _latin(prose)
    return ""


def _cyrillic(text: str) -> str:
    lower = text.lower()
    if any(c in lower for c in "іїєґ"):
        return "uk"
    if any(c in lower for c in "ђјљњћџѓќѕ"):
        return ""  # Serbian or Macedonian: not named
    # Without Ukrainian's letters, a Cyrillic text is Russian far more often than not.
    return "ru"


def _latin(text: str) -> str:
    words = _WORD.findall(text.lower().replace("’", "'"))
    scores = {code: 0 for code in _STOPWORDS}
    for word in words:
        head, elided, _ = word.partition("'")
        if elided and head in _FRENCH_ELISIONS:  # "l'assistant", "d'une", "qu'il"
            scores["fr"] += 1
            continue
        for code, stopwords in _STOPWORDS.items():
            if word in stopwords:
                scores[code] += 1
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, first), (_, second) = ranked[0], ranked[1]
    # Named only with a clear lead: a wrong name is worse than none.
    if first >= 2 and first >= 2 * second:
        return best
    if first >= 1 and second == 0 and len(words) <= 3:
        return best
    return ""
