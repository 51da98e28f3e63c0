"""`promptcast serve`: the page and the API under uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from promptcast.cli.common import add_timeouts
from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `serve` to the command parsers."""
    serve = commands.add_parser("serve", help="serve the page and the API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    serve.add_argument("--upstream", metavar="URL",
                       help="relay to the model service at URL instead of running it in-process")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--allow-anonymous", action="store_true", default=None,
                       help="serve a non-loopback --host without PROMPTCAST_API_KEYS "
                            "(anyone who reaches it can use your models)")
    serve.add_argument("--database-url", metavar="URL",
                       help="the library: sqlite:///path or postgresql://…, or off "
                            "(default: PROMPTCAST_DATABASE_URL, else your data directory)")
    add_timeouts(serve)
    serve.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Refuse an open public address, else serve until stopped."""
    from promptcast.ops.auth import anonymous_refusal

    if (refusal := anonymous_refusal(settings)) is not None:
        print(f"promptcast: {refusal}", file=sys.stderr)
        return 2
    # The library's database, reached and migrated before listening: a clear one-line
    # error now rather than a failed start-up's traceback (main() prints it).
    from promptcast.cli.db import check

    asyncio.run(check(settings))
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    """Run the app under uvicorn; SIGTERM drains open streams before exiting 0."""
    import signal
    import socket
    from types import FrameType

    import uvicorn

    from promptcast.ops.logs import configure
    from promptcast.ops.process import log_prepared, prepare_for_streams
    from promptcast.server.app import create_app
    from promptcast.server.protocol import http_protocol
    from promptcast.wire import scan

    configure(settings.log_level)
    app = create_app(settings)
    # After the app is built, so its objects are frozen out of collections;
    # before the server starts threads, so growing the fd table waits for none.
    log_prepared(prepare_for_streams())
    scan.warn_if_python()

    class DrainingServer(uvicorn.Server):
        # uvicorn stops accepting and waits for open connections; we make the
        # streams among them end by themselves once the drain time is up.
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                # A drained shutdown is a clean one: exit 0 rather than have
                # uvicorn re-raise SIGTERM once it is done.
                self._captured_signals.remove(sig)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(app.state.drain.start)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http=http_protocol(),  # httptools, plus the door and direct channels (protocol.py)
        access_log=False,  # promptcast.access logs each request, with its request id
        server_header=False,  # no `server: uvicorn` advertised on every response
        # Past the drain, streams end with `shutting_down` frames within seconds.
        timeout_graceful_shutdown=int(settings.drain_timeout) + 10,
    )
    DrainingServer(config).run()
