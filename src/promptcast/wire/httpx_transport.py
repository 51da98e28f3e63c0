"""The upstream transport on httpx: what speaks to upstreams through an HTTP(S) proxy.

httpx knows proxies (a plain one for `http://` upstreams, a `CONNECT`
tunnel for `https://` ones) where the built-in client does not. It costs more
CPU per chunk than the built-in client (docs/benchmarks.md), so it is used
when a proxy applies or when `PROMPTCAST_UPSTREAM_TRANSPORT=httpx` asks
(`wire/choose.py`). httpx never reads the environment here (`trust_env=False`):
the proxies come from the settings.

Push mode is a task per response: it pulls the body (`aiter_raw`) and calls
the listener's callbacks, and it waits before its next read while paused,
so a paused response really stops reading and TCP pushes back on the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable

import httpx

from promptcast.wire.transport import (
    BodyIncomplete,
    ConnectFailed,
    Headers,
    HTTPClientError,
    OnBodies,
    OnEnd,
)

log = logging.getLogger("promptcast.httpx_transport")

_MAX_IDLE = 64


def _no_proxy(url: str) -> str | None:
    return None


class HttpxTransport:
    """Opens streamed requests with httpx, each through the proxy `proxy_for` names for it."""

    def __init__(self, *, connect_timeout: float = 10.0,
                 proxy_for: Callable[[str], str | None] = _no_proxy,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._connect_timeout = connect_timeout
        self._proxy_for = proxy_for
        self._ssl = ssl_context
        # One client per proxy (None: direct); a process has one or two.
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        # Push readers and closings under way: awaited (or cancelled) by `aclose()`.
        self._tasks: set[asyncio.Task[None]] = set()

    def _client(self, proxy: str | None) -> httpx.AsyncClient:
        client = self._clients.get(proxy)
        if client is None:
            if self._ssl is None:
                # The system's CA store, as the built-in client trusts.
                self._ssl = ssl.create_default_context()
            client = httpx.AsyncClient(
                proxy=proxy,
                trust_env=False,
                verify=self._ssl,
                # Only connecting is bounded here: the relay owns the stream's limits.
                timeout=httpx.Timeout(None, connect=self._connect_timeout),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=_MAX_IDLE),
                follow_redirects=False,
            )
            self._clients[proxy] = client
        return client

    async def request(self, method: str, url: str, *, headers: dict[str, str],
                      body: bytes = b"") -> HttpxResponse:
        """Send a request; return once the response's headers are in."""
        try:
            client = self._client(self._proxy_for(url))
            request = client.build_request(method, url, headers=headers, content=body)
            response = await client.send(request, stream=True)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise HTTPClientError(f"not an http(s) URL: {url.partition(':')[0]}://…") from None
        except httpx.HTTPError as exc:
            raise _error(exc) from None
        return HttpxResponse(response, self._tasks)

    async def aclose(self) -> None:
        """Stop the readers still pushing, then close every connection."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _error(exc: httpx.HTTPError) -> HTTPClientError:
    """The seam's error for an httpx one (`wire/transport.py`)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return ConnectFailed(detail)
    if isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
        return BodyIncomplete(f"the upstream closed the connection mid-response: {detail}")
    return HTTPClientError(detail)


class HttpxResponse:
    """An httpx streamed response as the seam's `Response`."""

    __slots__ = ("_closed", "_closing", "_on_bodies", "_on_end", "_on_read", "_pump", "_raw",
                 "_reading", "_response", "_tasks", "headers", "status")

    def __init__(self, response: httpx.Response, tasks: set[asyncio.Task[None]]) -> None:
        self._response = response
        self._tasks = tasks
        self.status = response.status_code
        self.headers = Headers.of((name.lower(), value)
                                  for name, value in response.headers.multi_items())
        self._raw: AsyncIterator[bytes] | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._pump: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._closed = False
        self._on_bodies: OnBodies | None = None
        self._on_end: OnEnd | None = None
        self._on_read: Callable[[], None] | None = None

    def _chunks(self) -> AsyncIterator[bytes]:
        # One iterator for pull and push alike: nothing read is lost between them.
        if self._raw is None:
            self._raw = self._response.aiter_raw()
        return self._raw

    # -- pull ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                yield chunk
        except httpx.HTTPError as exc:
            raise _error(exc) from None

    async def read(self, limit: int) -> bytes:
        """The whole body, up to `limit` bytes (the rest is dropped with the connection)."""
        body = bytearray()
        try:
            async for chunk in self:
                body += chunk
                if len(body) >= limit:
                    break
        finally:
            await self.aclose()
        return bytes(body[:limit])

    # -- push ------------------------------------------------------------------

    def deliver(self, on_bodies: OnBodies, on_end: OnEnd, on_read: Callable[[], None]) -> None:
        """Push each chunk to `on_bodies` from a reader task; see `transport.Response`."""
        self._on_bodies, self._on_end, self._on_read = on_bodies, on_end, on_read
        on_read()  # nothing is buffered here: only the call the seam promises
        if self._closed:
            return
        self._pump = asyncio.get_running_loop().create_task(self._push())
        self._tasks.add(self._pump)
        self._pump.add_done_callback(self._tasks.discard)

    async def _push(self) -> None:
        chunks = self._chunks()
        batch: list[bytes] = []
        error: HTTPClientError | None = None
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()  # paused: no read until resumed
                if self._on_bodies is None:
                    return  # closed meanwhile
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                on_bodies = self._on_bodies
                if on_bodies is None:
                    return
                batch.append(chunk)
                on_bodies(batch)
                batch.clear()
                on_read = self._on_read
                if on_read is None:
                    return  # the listener closed the response
                on_read()
        except httpx.HTTPError as exc:
            error = _error(exc)
        except Exception:
            # A listener's bug, not the upstream's: the stream still ends, once.
            log.exception("a response callback failed")
            error = HTTPClientError("a response callback failed")
        on_end = self._on_end
        self._on_bodies = self._on_end = self._on_read = None
        if on_end is not None:
            on_end(error)

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Stop pushing and release the connection (closed, unless the body was read whole)."""
        if self._closed:
            return
        self._closed = True
        self._on_bodies = self._on_end = self._on_read = None
        self._reading.set()  # a paused reader wakes, sees the close and leaves
        pump = self._pump
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        self._closing = asyncio.get_running_loop().create_task(self._release())
        self._tasks.add(self._closing)
        self._closing.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """`close()`, and wait until the connection is released."""
        if not self._closed and self._pump is None:
            self._closed = True  # pulled, or never read: closed right here
            await self._release()
            return
        self.close()
        if self._closing is not None and self._closing is not asyncio.current_task():
            await asyncio.wait([self._closing])

    async def _release(self) -> None:
        pump = self._pump
        if pump is not None and pump is not asyncio.current_task():
            await asyncio.wait([pump])  # it leaves at once: cancelled, or its callbacks gone
        # The body's iterator first, if it stopped part-way: then the response.
        close_raw = getattr(self._raw, "aclose", None)
        try:
            if close_raw is not None:
                await close_raw()
        finally:
            await self._response.aclose()
