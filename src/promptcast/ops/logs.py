"""Logging: the request id on every line, one access line per request, one line per stream."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptcast import ids
from promptcast.relay.stats import StreamStats

stream_log = logging.getLogger("promptcast.stream")
access_log = logging.getLogger("promptcast.access")

# Set per request by RequestIdMiddleware; detached producer tasks inherit it.
request_id_var: ContextVar[str | None] = ContextVar("promptcast_request_id", default=None)
# Set in the scope once a stream's own line was logged: it says all the access
# line would, so a stream costs one log record, not two.
STREAM_LOGGED = "promptcast.stream_logged"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


class RequestIdMiddleware:
    """Gives each request an id (its X-Request-ID, or a new one) and logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if valid_request_id(given) else ids.request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if not scope.get(STREAM_LOGGED):
                log_access(scope["method"], scope["path"], status, started)
            request_id_var.reset(token)


def log_access(method: str, path: str, status: int, started: float) -> None:
    """One request's access line; `started` is its `time.perf_counter()` at the start."""
    access_log.info("%s %s %d %.1fms", method, path, status,
                    (time.perf_counter() - started) * 1000)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def log_stream(stats: StreamStats, *, model: str, mode: str, request_id: str | None,
               path: str | None = None) -> None:
    """Log one line for a finished stream: id, model, mode, timings, chunks, outcome."""
    if not stream_log.isEnabledFor(logging.INFO):
        return
    record = {
        "event": "stream",
        "path": path,
        "stream": stats.stream_id,
        "request_id": request_id,
        "model": model,
        "mode": mode,
        "ttft_ms": None if stats.first_event_after is None
        else round(stats.first_event_after * 1000, 1),
        "duration_ms": round(stats.duration * 1000, 1),
        "chunks": stats.chunks,
        "outcome": stats.outcome,  # a StrEnum: orjson writes its value
    }
    if stats.completion_tokens:
        record["completion_tokens"] = stats.completion_tokens
    if stats.error_code:
        record["error"] = stats.error_code
    stream_log.info(orjson.dumps(record).decode())


class _Formatter(logging.Formatter):
    """`logging.Formatter`, formatting each second's timestamp once, not once per record."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"


def configure(level: str) -> None:
    """One-line records on stderr at `level`, each with its request id."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(_Formatter(_FORMAT))
    # A stream costs a log record; our lines name no thread, process or source
    # line, so records skip looking them up (the logging HOWTO's "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
