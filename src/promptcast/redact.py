"""Keep secrets out of messages: configured keys, and credentials in URLs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")


class Redactor:
    """Replaces every configured secret (and anything shaped like a key) with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        text = _BEARER.sub(r"\1***", text)
        return _KEY_LIKE.sub("***", text)


def safe_url(url: str) -> str:
    """`scheme://host[:port]` of `url`: no user, password, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range or not a number
        port = ""
    return f"{parts.scheme}://{host}{port}"
