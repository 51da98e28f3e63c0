"""Keeping secrets out of messages: configured keys, bearer tokens, key-shaped strings, URLs."""

from __future__ import annotations

import pytest

from promptcast.redact import Redactor, safe_url

DS_KEY = "sk-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        # A configured key, wherever it appears, however often.
        (["ds-key-1234"], "401 for key ds-key-1234 (ds-key-1234)", "401 for key *** (***)"),
        # Longest first: a key that contains another is replaced whole.
        (["abcd", "abcdefgh"], "k=abcdefgh j=abcd", "k=*** j=***"),
        (["abcdefgh", "abcd"], "k=abcdefgh j=abcd", "k=*** j=***"),
        # Keys too short to be keys are not blanked everywhere they occur.
        (["", "ab", "xyz"], "xyz ab abc", "xyz ab abc"),
        # Characters that mean something in a regular expression mean nothing here.
        (["a.b*c+d?"], "a.b*c+d? aXbbbcd", "*** aXbbbcd"),
        # Nothing configured, nothing key-shaped: the text is unchanged.
        ([], "upstream answered 500: overloaded", "upstream answered 500: overloaded"),
        # A key in the configured list and shaped like a key.
        ([DS_KEY], f"Incorrect API key provided: {DS_KEY}.", "Incorrect API key provided: ***."),
    ],
)
def test_configured_secrets_are_replaced(secrets: list[str], text: str, expected: str) -> None:
    assert Redactor(secrets)(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl~mno+pq/rs==", "Authorization: Bearer ***"),
        ("authorization: bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "authorization: bearer ***"),
        ("BEARER   0123456789 rest", "BEARER   *** rest"),
        ("Bearer short", "Bearer short"),  # too short to be a token
        (f"invalid key {DS_KEY} given", "invalid key *** given"),
        ("key sk-proj-Ab_cD-ef0123456789xyz rejected", "key *** rejected"),
        ("sk-123", "sk-123"),  # too short to be a key
        ("task-0123456789", "task-0123456789"),  # not a key, just ends in 'sk-'
    ],
)
def test_bearer_tokens_and_key_shaped_strings_are_masked(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_redactor_leaves_no_part_of_a_key() -> None:
    key = "sk-proj-" + "A1b2_C3d4-" * 5
    text = f"POST https://api.openai.com/v1 with Authorization: Bearer {key} failed; key={key}"
    redacted = Redactor([key])(text)
    for start in range(0, len(key) - 6):
        assert key[start : start + 6] not in redacted
    assert redacted.count("***") == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pa55word@api.example.com:8443/v1/chat?key=sk-x#frag",
         "https://api.example.com:8443"),
        ("http://user@host/path", "http://host"),
        ("http://:secret@host:80", "http://host:80"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "https://dashscope.aliyuncs.com"),
        ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
        ("http://[::1]:8000/prompt/optimize-prompt", "http://[::1]:8000"),
        ("http://u:p@[2001:db8::7]/x", "http://[2001:db8::7]"),
        ("http://[2001:db8::7]:9000?token=abc", "http://[2001:db8::7]:9000"),
        ("redis://:redis-password@cache:6379/0", "redis://cache:6379"),
        ("http://API.Example.COM/", "http://api.example.com"),
    ],
)
def test_safe_url_keeps_only_scheme_host_and_port(url: str, expected: str) -> None:
    assert safe_url(url) == expected


@pytest.mark.parametrize("url", ["http://user:pw@host:99999/x", "http://user:pw@host:port/x"])
def test_safe_url_never_raises_and_never_leaks(url: str) -> None:
    # It is called while reporting another failure: it must not become one.
    shown = safe_url(url)
    assert "pw" not in shown
    assert "/x" not in shown
