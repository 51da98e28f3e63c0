"""Which language a text is written in, for the `language` expectation: by script, then by words.

Scripts settle most languages outright (Han, kana, Hangul, Cyrillic, ...).
Latin-script languages are told apart by their commonest short words, which
is enough for a customer-service answer of a sentence or more, and no more
than that: a text too short to tell is reported as unknown, not guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter


def _vocab(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Latin-script languages we can tell apart, each by words frequent in it and rare elsewhere.
_LATIN_WORDS: dict[str, frozenset[str]] = {
    "en": _vocab("the and is are you your to of for it this that with we can not be have "
                 "will please thank our on in"),
    "fr": _vocab("le la les et est vous votre nous des une un pour pas que qui dans avec "
                 "merci je ce au du"),
    "es": _vocab("el la los las y es usted su nosotros para por que una un con no gracias "
                 "su del lo se"),
    "de": _vocab("der die das und ist sie ihr wir nicht ein eine mit für zu bitte danke "
                 "ich den dem auf"),
    "it": _vocab("il lo la gli le e è lei suo noi per che una un con non grazie di del "
                 "della sono"),
    "pt": _vocab("o a os as e é você seu nós para que uma um com não obrigado do da em "
                 "por"),
}
LANGUAGES = ("zh", "ja", "ko", "ru", "ar", "he", "el", "th", "hi", *_LATIN_WORDS)

_WORD = re.compile(r"[^\W\d_]+")


def _script(char: str) -> str | None:
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
        return "kana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "ko"
    if 0x0400 <= code <= 0x04FF:
        return "ru"
    if 0x0600 <= code <= 0x06FF:
        return "ar"
    if 0x0590 <= code <= 0x05FF:
        return "he"
    if 0x0370 <= code <= 0x03FF:
        return "el"
    if 0x0E00 <= code <= 0x0E7F:
        return "th"
    if 0x0900 <= code <= 0x097F:
        return "hi"
    if char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
        return "latin"
    return None


def detect(text: str) -> str | None:
    """The language code of `text` (one of LANGUAGES), or None when it cannot be told."""
    scripts = Counter(s for s in map(_script, text) if s is not None)
    if not scripts:
        return None
    # Japanese writes kanji too: any real share of kana makes it Japanese.
    if scripts["kana"] and scripts["kana"] >= 0.1 * (scripts["kana"] + scripts["han"]):
        scripts["ja"] = scripts.pop("kana") + scripts.pop("han", 0)
    else:
        scripts.pop("kana", None)
        if "han" in scripts:
            scripts["zh"] = scripts.pop("han")
    top, count = scripts.most_common(1)[0]
    # A Chinese answer quoting an English order number is still Chinese: CJK
    # characters carry a word each, Latin letters a fraction of one.
    if top == "latin" and scripts["zh"] * 4 >= count:
        return "zh"
    if top != "latin":
        return top
    words = [w.casefold() for w in _WORD.findall(text)]
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _LATIN_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] == 0 or ranked[0] == ranked[1]:
        return None
    return best
