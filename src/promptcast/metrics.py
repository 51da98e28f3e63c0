"""Prometheus metrics, one registry per app; recorded per stream and per error, never per chunk."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .relay import StreamStats

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The counters an operator watches; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.in_flight = Gauge("promptcast_streams_in_flight", "Streams being relayed now",
                               ["model"], registry=r)
        self.streams = Counter("promptcast_streams_total", "Finished streams by outcome",
                               ["model", "outcome"], registry=r)
        self.ttft = Histogram("promptcast_time_to_first_token_seconds",
                              "Time from request to the first upstream event",
                              ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.duration = Histogram("promptcast_stream_duration_seconds",
                                  "Time from request to the terminal frame",
                                  ["model"], buckets=_DURATION_BUCKETS, registry=r)
        self.chunks = Counter("promptcast_chunks_total", "Chunks relayed", ["model"], registry=r)
        self.tokens = Counter("promptcast_tokens_total",
                              "Tokens reported by the upstream's usage",
                              ["model", "kind"], registry=r)
        self.errors = Counter("promptcast_errors_total",
                              "Errors by code, before or during a stream (upstream_* are the "
                              "upstream's)", ["model", "code"], registry=r)

    def started(self, model: str) -> None:
        self.in_flight.labels(model).inc()

    def finished(self, stats: StreamStats, model: str) -> None:
        self.in_flight.labels(model).dec()
        self.streams.labels(model, stats.outcome.value).inc()
        if stats.first_event_after is not None:
            self.ttft.labels(model).observe(stats.first_event_after)
        self.duration.labels(model).observe(stats.duration)
        self.chunks.labels(model).inc(stats.chunks)
        if stats.prompt_tokens:
            self.tokens.labels(model, "prompt").inc(stats.prompt_tokens)
        if stats.completion_tokens:
            self.tokens.labels(model, "completion").inc(stats.completion_tokens)
        if stats.error_code:
            self.errors.labels(model, stats.error_code).inc()

    def error(self, model: str, code: str) -> None:
        self.errors.labels(model, code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
