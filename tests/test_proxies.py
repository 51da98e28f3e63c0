"""Which proxy carries a request: the proxy variables in either case, and NO_PROXY's entries."""

from __future__ import annotations

import pytest

from promptcast.proxies import Proxies
from promptcast.redact import Redactor

PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(("env", "http", "https"), [
    ({}, None, None),
    ({"HTTP_PROXY": PROXY}, PROXY, None),
    ({"http_proxy": PROXY}, PROXY, None),
    ({"HTTPS_PROXY": PROXY}, None, PROXY),
    ({"https_proxy": PROXY}, None, PROXY),
    ({"ALL_PROXY": PROXY}, PROXY, PROXY),
    ({"all_proxy": PROXY, "HTTPS_PROXY": "http://tls.corp:1"}, PROXY, "http://tls.corp:1"),
    # Lower case wins when both are present, as curl has it; empty means none.
    ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, None, "http://lower:1"),
    ({"https_proxy": "", "HTTPS_PROXY": "http://upper:1"}, None, None),
    ({"HTTP_PROXY": "  "}, None, None),
    # No scheme: an HTTP proxy, as curl reads it.
    ({"HTTP_PROXY": "proxy.corp:3128"}, PROXY, None),
    ({"HTTPS_PROXY": "https://proxy.corp:443"}, None, "https://proxy.corp:443"),
])
def test_the_proxy_for_each_scheme(env: dict[str, str], http: str | None,
                                   https: str | None) -> None:
    proxies = Proxies.from_env(env)
    assert (proxies.for_url("http://api.example/v1"),
            proxies.for_url("https://api.example/v1")) == (http, https)
    assert bool(proxies) is bool(http or https)


@pytest.mark.parametrize(("no_proxy", "url", "bypassed"), [
    ("api.example", "https://api.example/v1", True),
    ("api.example", "https://eu.api.example/v1", True),        # subdomains too
    ("api.example", "https://xapi.example/v1", False),         # not a suffix of a label
    (".api.example", "https://eu.api.example/v1", True),
    ("*.api.example", "https://api.example/v1", True),
    ("API.Example", "https://api.example/v1", True),
    ("other.example, api.example", "https://api.example/v1", True),
    ("other.example api.example", "https://api.example/v1", True),
    ("other.example", "https://api.example/v1", False),
    ("*", "https://anything.example/v1", True),
    ("127.0.0.1", "http://127.0.0.1:9000/v1", True),
    ("127.0.0.1", "http://localhost:9000/v1", False),           # names are not resolved
    ("10.0.0.0/8", "http://10.2.3.4/v1", True),
    ("10.0.0.0/8", "http://11.2.3.4/v1", False),
    ("::1", "http://[::1]:8000/v1", True),
    ("fd00::/8", "http://[fd12::5]/v1", True),
    ("api.example:8443", "https://api.example:8443/v1", True),
    ("api.example:8443", "https://api.example/v1", False),      # 443, not 8443
    ("127.0.0.1:80", "http://127.0.0.1/v1", True),
    ("[::1]:8000", "http://[::1]:8000/v1", True),
    ("[::1]:8000", "http://[::1]:8001/v1", False),
])
def test_no_proxy_entries(no_proxy: str, url: str, bypassed: bool) -> None:
    proxies = Proxies.from_env({"ALL_PROXY": PROXY, "NO_PROXY": no_proxy})
    assert (proxies.for_url(url) is None) is bypassed


def test_no_proxy_in_lower_case_wins() -> None:
    proxies = Proxies.from_env({"ALL_PROXY": PROXY, "no_proxy": "a.example",
                                "NO_PROXY": "b.example"})
    assert proxies.for_url("http://a.example/") is None
    assert proxies.for_url("http://b.example/") == PROXY


def test_a_star_bypasses_everything_so_no_proxy_is_configured() -> None:
    assert not Proxies.from_env({"ALL_PROXY": PROXY, "NO_PROXY": "*"})


@pytest.mark.parametrize(("env", "words"), [
    ({"ALL_PROXY": "socks5://127.0.0.1:1080"}, ["ALL_PROXY", "socks5://", "http://"]),
    ({"all_proxy": "socks5h://u:secret@h:1080"}, ["all_proxy", "socks5h://"]),
    ({"HTTPS_PROXY": "http://proxy.corp:port"}, ["HTTPS_PROXY", "port"]),
    ({"HTTPS_PROXY": "http://proxy.corp:70000"}, ["HTTPS_PROXY", "port"]),
    ({"http_proxy": "http://"}, ["http_proxy", "proxy URL"]),
    ({"ALL_PROXY": PROXY, "NO_PROXY": "a.example:99999"}, ["NO_PROXY", "a.example:99999"]),
    ({"ALL_PROXY": PROXY, "no_proxy": "a.example:x"}, ["no_proxy", "port"]),
    ({"ALL_PROXY": PROXY, "NO_PROXY": "a/b"}, ["NO_PROXY", "'a/b'"]),
])
def test_a_bad_value_names_its_variable(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        Proxies.from_env(env)
    message = str(info.value)
    for word in words:
        assert word in message
    assert "secret" not in message


def test_proxy_passwords_are_secrets_to_scrub() -> None:
    proxies = Proxies.from_env({"HTTPS_PROXY": "http://me:p%40ss-word@proxy.corp:3128"})
    redact = Redactor(proxies.secrets())
    assert redact("auth failed for p@ss-word and p%40ss-word") == "auth failed for *** and ***"
