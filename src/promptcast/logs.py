"""Structured log lines: one JSON object per finished stream."""

from __future__ import annotations

import logging

import orjson

from .relay import StreamStats

stream_log = logging.getLogger("promptcast.stream")


def log_stream(stats: StreamStats, *, model: str, mode: str, request_id: str | None) -> None:
    """Log one line for a finished stream: id, model, mode, timings, chunks, outcome."""
    if not stream_log.isEnabledFor(logging.INFO):
        return
    record = {
        "event": "stream",
        "stream": stats.stream_id,
        "request_id": request_id,
        "model": model,
        "mode": mode,
        "ttft_ms": None if stats.first_event_after is None
        else round(stats.first_event_after * 1000, 1),
        "duration_ms": round(stats.duration * 1000, 1),
        "chunks": stats.chunks,
        "outcome": stats.outcome.value,
    }
    if stats.error_code:
        record["error"] = stats.error_code
    stream_log.info(orjson.dumps(record).decode())


def configure(level: str) -> None:
    """Plain one-line records on stderr, at `level`."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
