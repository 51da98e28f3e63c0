"""Log lines as an operator reads them: one per request and one per stream, each with its
request id, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from promptcast.ops import logs
from promptcast.ops.logs import (
    _FORMAT,
    _Formatter,
    configure,
    log_stream,
    request_id_var,
    stream_log,
)
from promptcast.relay.relay import Outcome, StreamStats

from .conftest import Process, models_file
from .sse_client import post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio


async def test_request_id_on_every_line_forwarded_and_no_secret_logged(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    key = "sk-test-LOGSECRET-0123456789"
    server = processes([], {
        "PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
        "PROMPTCAST_DEFAULT_MODEL": "keyed", "SCRIPTED_KEY": key,
    }, tmp_path / "server.log")
    upstream.enqueue(
        Script.chat(["hello"]),
        Script.raw(event(chunk_json("x")),
                   event(json.dumps({"error": {"message": f"key {key} refused"}}))),
        Script.error(401, f"Incorrect API key provided: {key}"),
    )
    ok = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"},
                           headers={"X-Request-ID": "req-abc-123"})
    assert ok.headers["x-request-id"] == "req-abc-123"
    assert upstream.requests[-1].headers["x-request-id"] == "req-abc-123"
    mid = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"},
                            headers={"X-Request-ID": "req-mid"})
    before = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"})
    assert mid.terminal.event == "error" and before.status == 502
    generated = before.headers["x-request-id"]
    assert len(generated) == 16

    server.proc.terminate()
    server.proc.wait(10)
    lines = server.output().splitlines()
    mine = [line for line in lines if "[req-abc-123]" in line]
    # A stream's one line is its own: it says all the access line would.
    assert not any("promptcast.access" in line for line in mine)
    stream_lines = [line for line in mine if "promptcast.stream" in line]
    assert len(stream_lines) == 1
    record = json.loads(stream_lines[0].split("] ", 1)[1])
    assert record["outcome"] == "done" and record["request_id"] == "req-abc-123"
    assert record["path"] == "/optimize-stream" and record["duration_ms"] >= 0
    assert record["model"] == "keyed" and record["chunks"] >= 1
    assert any(f"[{generated}]" in line and " 502 " in line for line in lines)
    assert key not in server.output()
    assert "LOGSECRET" not in server.output()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """`logs.configure`'s setup, writing to a buffer; the root logger restored after.

    Alone on the root logger for the test: pytest adds its capturing handlers
    again when the test starts (and those take the usual way, as they must).
    """
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    configure("info")
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    # One timestamp for both ways of writing a line.
    monkeypatch.setattr(time, "time", lambda: 1764770400.0429)
    try:
        yield out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def _alone() -> logging.Handler:
    """Our handler, alone on the root logger again (see `configured`)."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if type(h).__module__ == "promptcast.ops.logs"]
    [ours] = root.handlers
    return ours


def _stats() -> StreamStats:
    return StreamStats("s-1", first_event_after=0.0123, duration=1.5, chunks=7,
                       outcome=Outcome.DONE, completion_tokens=12)


def _log_one() -> None:
    token = request_id_var.set("req-7")
    try:
        log_stream(_stats(), model="local", mode="optimize", request_id="req-7", path="/x")
    finally:
        request_id_var.reset(token)


def test_stream_line_written_without_a_record_is_the_one_logging_writes(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    _alone()
    # The short way: no LogRecord is made at all.
    with monkeypatch.context() as patch:
        patch.setattr(logging.LogRecord, "__init__", _no_record)
        _log_one()
    short = configured.getvalue()
    configured.truncate(0)
    configured.seek(0)
    # A logger filter is something only logging itself can apply: the usual way.
    stream_log.addFilter(lambda record: True)
    try:
        _log_one()
    finally:
        stream_log.filters.clear()
    assert short == configured.getvalue()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764770400))
    assert short == (
        f"{stamp},042 INFO promptcast.stream [req-7] "  # milliseconds cut, not rounded
        '{"event":"stream","path":"/x","stream":"s-1","request_id":"req-7","model":"local",'
        '"mode":"optimize","ttft_ms":12.3,"duration_ms":1500.0,"chunks":7,"outcome":"done",'
        '"completion_tokens":12}\n')


def _no_record(*args: object, **kwargs: object) -> None:
    raise AssertionError("a LogRecord was made")


@pytest.mark.parametrize("change", ["second handler", "handler level", "handler filter",
                                    "formatter", "record factory", "own handler", "logger filter",
                                    "no propagation", "patched logging", "patched logger",
                                    "patched handler", "patched formatter"])
def test_anything_else_configured_sees_the_stream_line_as_a_record(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    root = logging.getLogger()
    ours = _alone()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    if change == "second handler":
        root.handlers.insert(0, Keep())
    elif change == "handler level":
        monkeypatch.setattr(ours, "level", logging.WARNING)
    elif change == "handler filter":
        ours.addFilter(lambda record: seen.append(record) or True)
    elif change == "formatter":
        ours.setFormatter(_Seen(seen))
    elif change == "record factory":
        default = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = default(*args, **kwargs)
            seen.append(record)
            return record

        logging.setLogRecordFactory(factory)
        monkeypatch.setattr(logging, "_logRecordFactory", factory)
        monkeypatch.setattr(logging, "getLogRecordFactory", lambda: factory)
    elif change == "own handler":
        stream_log.addHandler(Keep())
    elif change == "patched logging":  # as an error tracker's integration does
        call_handlers = logging.Logger.callHandlers

        def watched(self: logging.Logger, record: logging.LogRecord) -> None:
            seen.append(record)
            call_handlers(self, record)

        monkeypatch.setattr(logging.Logger, "callHandlers", watched)
    elif change == "patched logger":
        make_record = stream_log.makeRecord

        def made(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            seen.append(record)
            return record

        monkeypatch.setattr(stream_log, "makeRecord", made)
    elif change == "patched handler":
        monkeypatch.setattr(ours, "emit", seen.append)
    elif change == "patched formatter":
        assert ours.formatter is not None
        original = ours.formatter.format

        def format_seen(record: logging.LogRecord) -> str:
            seen.append(record)
            return original(record)

        monkeypatch.setattr(ours.formatter, "format", format_seen)
    elif change == "logger filter":
        monkeypatch.setattr(stream_log, "filters", [lambda record: seen.append(record) or True])
    else:
        monkeypatch.setattr(stream_log, "propagate", False)
    try:
        _log_one()
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
        stream_log.handlers.clear()
    if change in ("handler level", "no propagation"):
        # No handler takes it (logging's last resort takes warnings only): nothing written.
        assert seen == [] and configured.getvalue() == ""
        return
    [record] = seen
    assert record.name == "promptcast.stream" and '"stream":"s-1"' in record.getMessage()


class _Seen(_Formatter):
    # Our own formatter, but not as `configure` made it.
    def __init__(self, seen: list[logging.LogRecord]) -> None:
        super().__init__(_FORMAT)
        self._seen = seen

    def format(self, record: logging.LogRecord) -> str:
        self._seen.append(record)
        return super().format(record)


def test_a_renamed_level_is_written_as_logging_would(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    _alone()
    monkeypatch.setattr(logging, "_levelToName", {**logging._levelToName, logging.INFO: "INF"})
    _log_one()
    assert " INF promptcast.stream [req-7] " in configured.getvalue()


def test_the_short_way_formats_under_the_handlers_lock(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    # The formatter's timestamp cache is shared with records logged the usual
    # way, which `Handler.handle` formats under the lock: so must the short way.
    ours = _alone()
    assert ours.lock is not None and isinstance(ours.formatter, _Formatter)
    stamped = threading.Event()
    stamp = ours.formatter.stamp

    def stamp_seen(created: float, msecs: int) -> str:
        stamped.set()
        return stamp(created, msecs)

    monkeypatch.setattr(ours.formatter, "stamp", stamp_seen)
    worker = threading.Thread(target=_log_one)
    with ours.lock:
        worker.start()
        assert not stamped.wait(0.2)  # it waits for the lock before it formats
    worker.join(5)
    assert stamped.is_set() and configured.getvalue().count("\n") == 1


def test_a_logger_class_of_its_own_sees_the_stream_line(
        configured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    # `logging.setLoggerClass` before promptcast's loggers were made: its
    # methods are what logging runs, so the usual way.
    _alone()
    seen: list[logging.LogRecord] = []

    class Watching(logging.Logger):
        def handle(self, record: logging.LogRecord) -> None:
            seen.append(record)
            super().handle(record)

    watching = Watching("promptcast.stream", logging.INFO)
    watching.parent = logging.getLogger()
    monkeypatch.setattr(logs, "stream_log", watching)
    _log_one()
    [record] = seen
    assert '"stream":"s-1"' in record.getMessage()
    assert '"stream":"s-1"' in configured.getvalue()
