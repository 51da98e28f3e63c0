"""Logging: the request id on every line, one access line per request, one line per stream."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptcast import ids
from promptcast.relay.relay import StreamStats

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
                access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status,
                                (time.perf_counter() - started) * 1000)
            request_id_var.reset(token)


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
    message = orjson.dumps(record).decode()
    handler = _sole_handler(stream_log)
    if handler is None or not handler.write_info(stream_log.name, message):
        stream_log.info(message)


# `logging`'s own code, as it was when promptcast was imported: where anything
# (an error tracker's integration, say) has patched it, the usual way is taken.
_LOGGING_AS_IS = (logging.Logger.handle, logging.Logger.callHandlers,
                  logging.Logger.makeRecord, logging.Logger.info)
# Methods an instance may be given of its own, in place of its class's.
_OVERRIDABLE = frozenset({"handle", "callHandlers", "makeRecord", "info", "emit", "format",
                          "formatTime", "formatMessage", "filter", "flush"})


def _sole_handler(logger: logging.Logger) -> _LineHandler | None:
    """Our own handler, if it is the only one an INFO record of `logger` reaches, and
    nothing else (a logger's filter, a record factory, patched `logging` code) would see
    or change the record."""
    if (logger.filters or type(logger) is not logging.Logger
            or logging.getLogRecordFactory() is not logging.LogRecord
            or (logging.Logger.handle, logging.Logger.callHandlers, logging.Logger.makeRecord,
                logging.Logger.info) != _LOGGING_AS_IS
            or not _OVERRIDABLE.isdisjoint(logger.__dict__)):
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if type(found) is not _LineHandler or found.level > logging.INFO:
        return None
    return found


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """`logging.StreamHandler` with our line format, able to write a stream's line without a
    `LogRecord` and `logging`'s dozens of calls: the same bytes, for 8 % fewer instructions
    a stream (docs/benchmarks.md)."""

    def write_info(self, name: str, message: str) -> bool:
        """Write `message` as `name`'s INFO line, as `emit` would; False if this handler is not
        as `configure` set it up (the caller then logs the usual way)."""
        formatter = self.formatter
        filters = self.filters
        if (type(formatter) is not _Formatter or formatter._fmt != _FORMAT
                or len(filters) != 1 or type(filters[0]) is not _RequestIdFilter
                or not _OVERRIDABLE.isdisjoint(self.__dict__)
                or not _OVERRIDABLE.isdisjoint(formatter.__dict__)):
            return False
        created = time.time()
        # Under the handler's lock, as `Handler.handle` formats: the formatter's
        # timestamp cache is shared with records formatted the usual way.
        with self.lock:  # type: ignore[union-attr]
            try:
                line = (f"{formatter.stamp(created, int((created - int(created)) * 1000))} "
                        f"{logging.getLevelName(logging.INFO)} {name} "
                        f"[{request_id_var.get() or '-'}] {message}{self.terminator}")
                self.stream.write(line)
                self.flush()
            except RecursionError:  # as StreamHandler.emit
                raise
            except Exception:
                self.handleError(logging.makeLogRecord(
                    {"name": name, "msg": message, "levelno": logging.INFO,
                     "levelname": logging.getLevelName(logging.INFO), "created": created}))
        return True


class _Formatter(logging.Formatter):
    """`logging.Formatter`, formatting each second's timestamp once, not once per record."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created, int(record.msecs))

    def stamp(self, created: float, msecs: int) -> str:
        """`asctime` for a record created at `created`, `msecs` its milliseconds."""
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = second
        return f"{self._stamp},{msecs:03d}"


def configure(level: str) -> None:
    """One-line records on stderr at `level`, each with its request id."""
    handler = _LineHandler()
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
