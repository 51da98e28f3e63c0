"""Which transport carries a process's upstream requests, chosen once from the settings.

`PROMPTCAST_UPSTREAM_TRANSPORT`:

- `auto` (the default): the built-in client, unless a proxy variable is set;
  then each upstream URL a proxy applies to goes through httpx, and the ones
  `NO_PROXY` exempts keep the built-in client (`transport.ProxyRouting`);
- `builtin`: the built-in client for everything; proxies are not used;
- `httpx`: httpx for everything, through the proxies that apply.
"""

from __future__ import annotations

import logging

from promptcast.redact import safe_url
from promptcast.settings import Settings
from promptcast.wire.http_client import HTTPClient
from promptcast.wire.httpx_transport import HttpxTransport
from promptcast.wire.transport import ProxyRouting, Transport

log = logging.getLogger("promptcast.transport")


def choose_transport(settings: Settings) -> Transport:
    """The upstream transport `settings` ask for; its owner closes it with `aclose()`."""
    proxies = settings.proxies
    kind = settings.upstream_transport
    if kind == "httpx":
        return HttpxTransport(connect_timeout=settings.connect_timeout,
                              proxy_for=proxies.for_url)
    builtin = HTTPClient(connect_timeout=settings.connect_timeout)
    if not proxies:
        return builtin
    if kind == "builtin":
        shown = ", ".join(sorted({safe_url(p) for p in (proxies.http, proxies.https) if p}))
        log.warning("PROMPTCAST_UPSTREAM_TRANSPORT=builtin: upstreams are reached directly, "
                    "not through the configured proxy (%s)", shown)
        return builtin
    return ProxyRouting(
        builtin,
        HttpxTransport(connect_timeout=settings.connect_timeout, proxy_for=proxies.for_url),
        uses_proxy=lambda url: proxies.for_url(url) is not None,
    )
