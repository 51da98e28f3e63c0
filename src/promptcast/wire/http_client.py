"""A small HTTP/1.1 client for the relay's hot path: one request, a streamed response body.

Why not httpx here: per chunk relayed, httpx's layers (httpcore, h11, anyio,
sniffio) cost more CPU than the rest of the relay put together (see
docs/benchmarks.md). This client is an asyncio Protocol fed by httptools' C
parser. The parser appends each body chunk to a list (a C call, no Python
frame), and each socket read hands its chunks over at once: one wake-up of
the reader, or one call of a push listener, per read rather than per chunk.

    loop ──data_received──▶ parser ──(append)──▶ the read's chunks
            ├──▶ deque ──(wake)──▶ `async for chunk in response`
            │      (pause_reading above the high-water mark; resume below)
            └──▶ `deliver(on_bodies, on_end, on_read)`: a read's chunks handed over
                 inside the read callback, no task hop

Connections are kept alive and reused per (scheme, host, port) when a
response was read to its end; one given up part-way is closed. A new
connection tries the host's addresses in order until one answers. It speaks
to upstreams directly: through a proxy, httpx does (`wire/choose.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from promptcast.wire.http_connection import Connection, Origin, Response
from promptcast.wire.transport import BodyIncomplete, ConnectFailed, HTTPClientError

__all__ = ["BodyIncomplete", "ConnectFailed", "HTTPClient", "HTTPClientError", "Resolver",
           "Response"]

_MAX_IDLE_PER_HOST = 64
_DNS_TTL = 60.0


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# The addresses of a host name, in the order to try them (getaddrinfo's, by default).
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HTTPClient:
    """Opens streamed requests; owns the idle connections kept for reuse."""

    def __init__(self, *, connect_timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None,
                 resolver: Resolver = _getaddrinfo) -> None:
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._resolver = resolver
        self._idle: dict[Origin, list[Connection]] = {}
        self._addresses: dict[str, tuple[float, list[str]]] = {}
        self._targets: dict[str, tuple[Origin, str, str]] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _reuse(self, origin: Origin) -> Connection | None:
        """A kept-alive connection to `origin` still open, if the pool has one."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self, origin: Origin) -> Connection:
        """A new connection to `origin`: its addresses tried in order, all within the timeout."""
        loop = asyncio.get_running_loop()
        tls = self._tls() if origin.scheme == "https" else None
        failed: list[str] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                addresses = await self._resolve(origin)
                for index, address in enumerate(addresses):
                    try:
                        _, conn = await loop.create_connection(
                            Connection, address, origin.port, ssl=tls,
                            server_hostname=origin.host if tls else None,
                        )
                    except ssl.SSLError as exc:
                        # The certificate is the host's, not one address's: no point going on.
                        raise ConnectFailed(type(exc).__name__) from None
                    except OSError as exc:
                        failed.append(type(exc).__name__)
                        continue
                    if index:
                        self._prefer(origin.host, address)
                    return conn
        except TimeoutError:
            tried = f" ({', '.join(failed)} before)" if failed else ""
            raise ConnectFailed(
                f"connecting timed out after {self._connect_timeout:g} s{tried}") from None
        except OSError as exc:  # the name did not resolve
            raise ConnectFailed(type(exc).__name__) from None
        if len(failed) == 1:
            raise ConnectFailed(failed[0])
        raise ConnectFailed(f"{len(failed)} addresses tried: {', '.join(failed)}")

    async def _resolve(self, origin: Origin) -> list[str]:
        """The host's addresses: IP literals as they are, names cached for a minute.

        Without the cache every new connection resolves on a worker thread
        (getaddrinfo blocks), costing a thread hop and an allocator arena.
        """
        host = origin.host
        loop = asyncio.get_running_loop()
        cached = self._addresses.get(host)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        if _is_ip(host):
            self._addresses[host] = (float("inf"), [host])
            return [host]
        addresses = await self._resolver(host, origin.port)
        if not addresses:
            raise OSError(f"no address for {host}")
        self._addresses[host] = (loop.time() + _DNS_TTL, addresses)
        return addresses

    def _prefer(self, host: str, address: str) -> None:
        """Try `address` first from now on: the ones before it did not answer."""
        cached = self._addresses.get(host)
        if cached is not None and address in cached[1]:
            rest = [a for a in cached[1] if a != address]
            self._addresses[host] = (cached[0], [address, *rest])

    def put_back(self, origin: Origin, conn: Connection) -> None:
        """Keep a connection whose response was read to its end, for the next request."""
        idle = self._idle.setdefault(origin, [])
        if len(idle) < _MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn.close()

    def _target(self, url: str) -> tuple[Origin, str, str]:
        """Where `url` goes: origin, request target, Host header (parsed once per URL)."""
        known = self._targets.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HTTPClientError(f"not an http(s) URL: {parts.scheme}://…")
        origin = Origin(parts.scheme, parts.hostname,
                         parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if len(self._targets) < 256:  # the configured upstreams: a handful
            self._targets[url] = (origin, target, host)
        return origin, target, host

    async def request(self, method: str, url: str, *, headers: dict[str, str],
                      body: bytes = b"") -> Response:
        """Send a request and return once the response's headers arrived."""
        origin, target, host = self._target(url)
        head = [f"{method} {target} HTTP/1.1", f"Host: {host}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        # A kept-alive connection may have been closed by the server meanwhile;
        # then, and only then, the request goes again on a fresh connection. A
        # fresh connection failing is never retried: the server may have
        # started the (paid) work.
        while True:
            # Reuse needs no await: no coroutine for it, as a stream start mostly reuses.
            conn = self._reuse(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            response = Response(conn, self, origin)
            conn.start(response)
            assert conn.transport is not None
            conn.transport.write(data)
            try:
                await response._headers()
            except BodyIncomplete:
                conn.close()
                if reused and not response.headers_done:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return response

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
