"""A real HTTP forward proxy on a loopback port, as a company network puts in the way.

It runs in its own thread with its own event loop, like the upstream double.
An absolute-form request (`POST http://host:port/path HTTP/1.1`) goes on to
its origin in origin form; `CONNECT host:port` opens a tunnel. One request
per client connection. It records the targets it was asked for, and a client
leaving closes the connection to the origin, so the origin sees it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from urllib.parse import urlsplit

from .connections import close_fully


class ForwardProxy:
    """`url` is what `HTTP_PROXY` should be; `seen` lists the targets it forwarded."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._started = threading.Event()
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> ForwardProxy:
        self._thread.start()
        self._started.wait(5)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            handlers = [task for task in asyncio.all_tasks(self._loop)
                        if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            # Each handler closes its connections on the way out: waited for
            # here, so that no transport outlives the loop that owns it.
            await asyncio.gather(*handlers, return_exceptions=True)

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.seen) >= count, timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock)
            self._started.set()

        self._loop.run_until_complete(boot())
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            with self._cond:
                self.seen.append(f"{method} {target}")
                self._cond.notify_all()
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, upstream = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                url = urlsplit(target)
                assert url.hostname is not None
                up_reader, upstream = await asyncio.open_connection(url.hostname,
                                                                    url.port or 80)
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                kept = [line for line in lines[1:] if line and not line.lower().startswith(
                    ("proxy-connection:", "proxy-authorization:", "connection:"))]
                upstream.write(f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
                               + "".join(f"{line}\r\n" for line in kept).encode("latin-1")
                               + b"Connection: close\r\n\r\n")
            await _pipe_both(reader, writer, up_reader, upstream)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            await asyncio.gather(*(close_fully(side) for side in (writer, upstream)
                                   if side is not None))


async def _pipe_both(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
    """Bytes both ways until either side ends; then both connections close."""
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()

    tasks = [asyncio.ensure_future(pipe(client_reader, upstream)),
             asyncio.ensure_future(pipe(up_reader, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
