"""The seam between the providers and the network: an upstream HTTP transport.

Providers and the split gateway's source open requests through a `Transport`
and read a streamed `Response`, pulled (`async for`) or pushed (`deliver`).
Two implementations fill it: the built-in client (`http_client.py`, the
relay's hot path) and httpx (`httpx_transport.py`, which speaks to proxies).
Both raise only the errors below, so a caller never sees whose they are.

    HTTPClientError            the connection failed or the peer broke HTTP/1.1
     ├── ConnectFailed         no connection (refused, unreachable, timed out, TLS, proxy)
     └── BodyIncomplete        the connection ended before the response did
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol


class HTTPClientError(Exception):
    """The connection failed or the peer broke the protocol; the message says which."""


class ConnectFailed(HTTPClientError):
    """No connection could be made (refused, unreachable, timed out, TLS or proxy failed)."""


class BodyIncomplete(HTTPClientError):
    """The connection ended before the response body did."""


class Headers(dict[str, str]):
    """Response headers by lower-case name: a lookup gives the first value, `get_all` each one.

    A dict, so lookups and building stay C calls; repeated headers (`Set-Cookie`,
    `Link`, a `Warning` per hop) keep their later values aside.
    """

    _more: dict[str, list[str]] | None = None  # set on an instance at its first repeat

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Headers from `(lower-case name, value)` pairs, in order."""
        headers = cls()
        for name, value in items:
            headers.add(name, value)
        return headers

    def add(self, name: str, value: str) -> None:
        """Append one header line; `name` must be lower case."""
        if name not in self:
            self[name] = value
            return
        if self._more is None:
            self._more = {}
        self._more.setdefault(name, []).append(value)

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in the order they came; [] when absent."""
        name = name.lower()
        first = self.get(name)
        if first is None:
            return []
        more = self._more.get(name) if self._more is not None else None
        return [first, *more] if more else [first]


OnBodies = Callable[[list[bytes]], None]
OnEnd = Callable[[HTTPClientError | None], None]


class Response(Protocol):
    """A response whose headers are in and whose body is read as it arrives."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; raises `HTTPClientError` if it breaks off."""

    async def read(self, limit: int) -> bytes:
        """The body up to `limit` bytes (an error body, say); the response is closed after."""

    def deliver(self, on_bodies: OnBodies, on_end: OnEnd, on_read: Callable[[], None]) -> None:
        """Push mode: hand each read's chunks to `on_bodies`, call `on_read` after each read
        and `on_end` once (None: the body is complete).

        The list given to `on_bodies` is reused: take its chunks, not the list.
        `on_read` is called once inside this call too. Any callback may `close()`
        the response; then no callback follows.
        """

    def pause_reading(self) -> None:
        """Push mode's flow control: read nothing more from the upstream until resumed."""

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        """Done with it: a finished response's connection may be reused, any other is closed."""

    async def aclose(self) -> None:
        """`close()`, and wait until the connection is released."""


class Transport(Protocol):
    """Opens streamed upstream requests; owns the connections kept for reuse."""

    async def request(self, method: str, url: str, *, headers: dict[str, str],
                      body: bytes = b"") -> Response:
        """Send a request; return once the response's headers are in."""

    async def aclose(self) -> None:
        """Close every connection it keeps."""


class ProxyRouting:
    """Each request through `proxied` when a proxy applies to its URL, else `direct`.

    The choice depends on the URL's scheme and host only, so it is made once
    per URL (the configured upstreams: a handful).
    """

    def __init__(self, direct: Transport, proxied: Transport,
                 uses_proxy: Callable[[str], bool]) -> None:
        self._direct = direct
        self._proxied = proxied
        self._uses_proxy = uses_proxy
        self._routes: dict[str, Transport] = {}

    def route(self, url: str) -> Transport:
        """The transport that carries requests to `url`."""
        transport = self._routes.get(url)
        if transport is None:
            transport = self._proxied if self._uses_proxy(url) else self._direct
            if len(self._routes) < 256:
                self._routes[url] = transport
        return transport

    async def request(self, method: str, url: str, *, headers: dict[str, str],
                      body: bytes = b"") -> Response:
        return await self.route(url).request(method, url, headers=headers, body=body)

    async def aclose(self) -> None:
        try:
            await self._proxied.aclose()
        finally:
            await self._direct.aclose()
