"""uvicorn's httptools protocol, with the door below ASGI (`door.py`) and a channel per scope.

Fenced: this module and `channels.py` are the only ones that know uvicorn's
insides. They are written for the uvicorn release pyproject.toml pins
(`SUPPORTED`), and tests/test_protocol.py holds every override to it; under
any other release `promptcast serve` runs uvicorn's own protocol, with no
door and no channels (`http_protocol()`), and streams go through ASGI `send`.

Overridden, each calling uvicorn's own: `on_headers_complete` (a POST to a
stream route becomes an `Exchange` the door may serve; any other request
gets a `CycleChannel` in its scope), `on_body` and `on_message_complete`
(an exchange's body, then the door's decision: serve it, or make it the
app's after all, through uvicorn's own `on_headers_complete`),
`connection_lost`, `pause_writing` and `resume_writing` (told to channels).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import httptools
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from promptcast.ops.logs import log_access
from promptcast.server.channels import (
    _ENDED,
    DIRECT,
    CycleChannel,
    DirectChannel,
    Exchange,
    Headers,
)

# The uvicorn minor release this module is written for (pyproject.toml pins it).
SUPPORTED = "0.55."
# Where the app's lifespan state keeps its door (`door.Door`), when it has one.
DOOR = "promptcast.door"

log = logging.getLogger("promptcast.door")


class DoorLike(Protocol):
    """What the protocol needs of the door."""

    app: object  # the app whose lifespan opened it
    loop: asyncio.AbstractEventLoop  # the server's
    max_body: int

    def claims(self, path: str) -> bool: ...

    def start(self, exchange: Exchange) -> Coroutine[Any, Any, None] | None: ...


def supported() -> bool:
    """Whether the installed uvicorn is the release this module is written for."""
    return uvicorn.__version__.startswith(SUPPORTED)


def http_protocol() -> type[asyncio.Protocol] | str:
    """What `uvicorn.Config(http=...)` should run: ours on the supported release, else its own."""
    if supported():
        return HttpProtocol
    log.warning("uvicorn %s is not the release promptcast is built for (%sx): running "
                "without the door below ASGI", uvicorn.__version__, SUPPORTED)
    return "httptools"


def _served_app(app: Any) -> Any:
    """The app inside uvicorn's own wrappers (proxy headers, message logging)."""
    while type(app).__module__.startswith("uvicorn.middleware.") and hasattr(app, "app"):
        app = app.app
    return app


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: the door for stream starts, a `DirectChannel` per scope."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        door: DoorLike | None = app_state.get(DOOR)
        super().__init__(config, server_state, app_state,
                         _loop=_loop or (door.loop if door is not None else None))
        # Only for the app it was opened for: a wrapper around it must see every request.
        self._door = door if door is not None and _served_app(self.app) is door.app else None
        # Requests of this connection whose responses may still be running
        # (more than one only when the client pipelines).
        self._channels: list[DirectChannel] = []

    # -- what an Exchange needs (channels.Owner) --------------------------------------

    @property
    def default_headers(self) -> Headers:
        return self.server_state.default_headers

    @property
    def write_paused(self) -> bool:
        return self.flow.write_paused

    # -- parser callbacks ---------------------------------------------------------------

    def on_headers_complete(self) -> None:
        exchange = self._claim()
        if exchange is not None:
            self.cycle = exchange  # type: ignore[assignment]
            self._keep(exchange)
            return
        super().on_headers_complete()
        self._attach_channel()

    def on_body(self, body: bytes) -> None:
        exchange: object = self.cycle
        if not isinstance(exchange, Exchange):
            super().on_body(body)
            return
        exchange.body += body
        assert self._door is not None
        if len(exchange.body) > self._door.max_body:
            self._to_app(exchange)  # the app refuses it, as it always has

    def on_message_complete(self) -> None:
        exchange: object = self.cycle
        if not isinstance(exchange, Exchange):
            super().on_message_complete()
            return
        assert self._door is not None
        try:
            serve = self._door.start(exchange)
        except Exception:
            log.exception("the door failed on a request; the app takes it")
            serve = None
        if serve is None:
            self._to_app(exchange)
            super().on_message_complete()
            return
        exchange.body.clear()  # parsed: not kept for the stream's life
        if self.config.reset_contextvars:  # as uvicorn's own `_start_asgi_task`
            task = self.loop.create_task(self._serve(exchange, serve),
                                         context=contextvars.Context())
        else:
            task = self.loop.create_task(self._serve(exchange, serve))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # -- the door's requests ------------------------------------------------------------

    def _claim(self) -> Exchange | None:
        """An `Exchange` for this request if the door may serve it, else None."""
        door = self._door
        parser = self.parser
        if (door is None or parser.get_method() != b"POST" or self.expect_100_continue
                or self.root_path or self.limit_concurrency is not None
                or (self.cycle is not None and not self.cycle.response_complete)
                or parser.should_upgrade()):
            return None
        path = httptools.parse_url(self.url).path.decode("ascii")
        if "%" in path or not door.claims(path):
            return None
        for name, value in self.headers:
            # Refused at once by the app, before the body is sent.
            if name == b"content-length" and (not value.isdigit() or int(value) > door.max_body):
                return None
        return Exchange(self, path, self.headers, keep_alive=(
            parser.get_http_version() != "1.0" and parser.should_keep_alive()))

    def _to_app(self, exchange: Exchange) -> None:
        """Give a claimed request to the app after all, with its body so far: uvicorn's own
        `on_headers_complete` makes its cycle and starts the app, as it would have."""
        self.cycle = None  # type: ignore[assignment]
        self._channels = [c for c in self._channels if c is not exchange]
        super().on_headers_complete()
        cycle = self.cycle
        cycle.body = exchange.body
        cycle.message_event.set()  # what uvicorn's on_body does: the body is there to read
        self._attach_channel()

    async def _serve(self, exchange: Exchange, serve: Coroutine[Any, Any, None]) -> None:
        # What uvicorn's `run_asgi` does for an app: a failure (a cancel at
        # shutdown too) is logged and answered with a 500, or the connection
        # dropped if the response began.
        started = time.perf_counter()
        try:
            await serve
        except BaseException as exc:
            log.error("a stream failed", exc_info=exc)
            if not exchange.response_started:
                exchange.keep_alive = False
                exchange.respond(500, [(b"content-type", b"text/plain; charset=utf-8")],
                                 b"Internal Server Error")
                log_access("POST", exchange.path, 500, started)
            else:
                exchange.abort()
        else:
            if not exchange.response_complete:
                exchange.abort()

    # -- channels -----------------------------------------------------------------------

    def _attach_channel(self) -> None:
        """Offer the app's request its connection (`channels.channel_of`)."""
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: no cycle was made for this request
        channel = CycleChannel(cycle)
        self._keep(channel)
        # The ASGI task starts on a later loop turn, so it sees the extension.
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DIRECT] = channel

    def _keep(self, channel: DirectChannel) -> None:
        channels = []
        for kept in self._channels:
            if kept.done:
                kept._detach()
            else:
                channels.append(kept)
        channels.append(channel)
        self._channels = channels

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        cycle: object = self.cycle
        if isinstance(cycle, Exchange):
            # Nothing to tell this connection any more; and a request whose
            # body never came in full would otherwise keep a loop through it.
            cycle._protocol = _ENDED
        channels, self._channels = self._channels, []
        for channel in channels:
            channel._lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        for channel in self._channels:
            channel.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        for channel in self._channels:
            channel._resumed()
