"""Which proxy, if any, carries a request to an upstream: HTTP(S)_PROXY, ALL_PROXY, NO_PROXY.

Read once by `Settings.from_env`. Each variable counts in lower or upper
case; when both are present the lower-case one wins, as curl has it, and an
empty one means "none" (so `https_proxy=` switches off a system-wide
`HTTPS_PROXY`). Unlike curl, upper-case `HTTP_PROXY` counts too: the reason
curl skips it (a CGI request header can set it) does not apply to a server.

- `http_proxy` serves `http://` upstreams, `https_proxy` `https://` ones,
  and `all_proxy` both when the specific one is unset.
- A proxy URL without a scheme is `http://`; `https://` proxies work too.
- `no_proxy`: entries split by commas or spaces. `*` alone bypasses the proxy
  for every host. A name matches itself and its subdomains (a leading `.` or
  `*.` is dropped); an IP address or CIDR block matches the addresses in it;
  `:port` after any entry limits it to that port. Loopback is not bypassed
  by itself: list `localhost,127.0.0.1` if you want it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from promptcast.redact import safe_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Bypass(NamedTuple):
    """One `no_proxy` entry: a domain or a block of addresses, on any port or one."""

    domain: str | None
    network: IPNetwork | None
    port: int | None


@dataclass(frozen=True, slots=True)
class Proxies:
    """The proxy for each scheme and the hosts that bypass it; empty: no proxy at all."""

    http: str | None = None
    https: str | None = None
    bypass: tuple[_Bypass, ...] = ()
    bypass_all: bool = False

    def __bool__(self) -> bool:
        return (self.http is not None or self.https is not None) and not self.bypass_all

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Proxies:
        """The proxies `env` configures; ValueError naming the variable for a bad value."""
        fallback = _proxy_url(env, "all_proxy")
        bypass, bypass_all = _bypass_list(env)
        return cls(http=_proxy_url(env, "http_proxy") or fallback,
                   https=_proxy_url(env, "https_proxy") or fallback,
                   bypass=bypass, bypass_all=bypass_all)

    def for_url(self, url: str) -> str | None:
        """The proxy URL that carries a request to `url`, or None to go direct."""
        parts = urlsplit(url)
        proxy = {"http": self.http, "https": self.https}.get(parts.scheme)
        if proxy is None or self.bypass_all:
            return None
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if any(_matches(entry, host, port) for entry in self.bypass):
            return None
        return proxy

    def secrets(self) -> list[str]:
        """Passwords in the proxy URLs, so error messages can be scrubbed of them."""
        found = []
        for proxy in (self.http, self.https):
            password = urlsplit(proxy).password if proxy else None
            if password:
                found += [password, unquote(password)]
        return found


def _variable(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """`(variable, value)` for `name`, lower case first; None when unset or empty."""
    for variable in (name, name.upper()):
        if variable in env:
            value = env[variable].strip()
            return (variable, value) if value else None
    return None


def _proxy_url(env: Mapping[str, str], name: str) -> str | None:
    found = _variable(env, name)
    if found is None:
        return None
    variable, value = found
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    shown = safe_url(url)  # never the password, in an error or a log
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{variable}: promptcast goes through http:// or https:// proxies, "
                         f"not {parts.scheme}:// ({shown})")
    try:
        parts.port  # noqa: B018 - parsed for its check: a port that is not a number
    except ValueError:
        raise ValueError(f"{variable}: the proxy's port is not a number from 1 to 65535 "
                         f"({shown})") from None
    if not parts.hostname:
        raise ValueError(f"{variable} must be a proxy URL like http://proxy.example:3128")
    return url


def _bypass_list(env: Mapping[str, str]) -> tuple[tuple[_Bypass, ...], bool]:
    found = _variable(env, "no_proxy")
    if found is None:
        return (), False
    variable, value = found
    entries = value.replace(",", " ").split()
    if "*" in entries:
        return (), True
    return tuple(_bypass_entry(variable, entry) for entry in entries), False


def _bypass_entry(variable: str, entry: str) -> _Bypass:
    host, port = entry.lower(), None
    if host.startswith("["):  # [v6] or [v6]:port
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest.startswith(":"):
            port = _port(variable, entry, rest[1:])
    elif host.count(":") == 1:  # name:port or v4:port; bare v6 has more colons
        host, _, number = host.partition(":")
        port = _port(variable, entry, number)
    try:
        return _Bypass(None, ipaddress.ip_network(host, strict=False), port)
    except ValueError:
        pass
    domain = host.removeprefix("*").removeprefix(".")
    if not domain or "/" in domain:
        raise ValueError(f"{variable}: {entry!r} is not a host name, domain, IP address or "
                         "CIDR block")
    return _Bypass(domain, None, port)


def _port(variable: str, entry: str, number: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"{variable}: {entry!r} has a port that is not a number from 1 to 65535")
    return int(number)


def _matches(entry: _Bypass, host: str, port: int) -> bool:
    if entry.port is not None and entry.port != port:
        return False
    if entry.network is not None:
        try:
            return ipaddress.ip_address(host) in entry.network
        except ValueError:
            return False
    assert entry.domain is not None
    return host == entry.domain or host.endswith("." + entry.domain)
