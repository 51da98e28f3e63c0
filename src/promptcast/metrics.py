"""Prometheus metrics, one registry per app; recorded per stream and per error, never per chunk."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .relay import Outcome, StreamStats

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(slots=True)
class _ModelMetrics:
    """One model's labelled children, looked up once."""

    in_flight: Gauge
    ttft: Histogram
    duration: Histogram
    chunks: Counter
    outcomes: dict[Outcome, Counter] = field(default_factory=dict)


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
        self._models: dict[str, _ModelMetrics] = {}

    def _of(self, model: str) -> _ModelMetrics:
        # `labels()` costs a lock and a tuple key per call: resolve once per model.
        children = self._models.get(model)
        if children is None:
            children = self._models[model] = _ModelMetrics(
                self.in_flight.labels(model), self.ttft.labels(model),
                self.duration.labels(model), self.chunks.labels(model))
        return children

    def started(self, model: str) -> None:
        self._of(model).in_flight.inc()

    def finished(self, stats: StreamStats, model: str) -> None:
        children = self._of(model)
        children.in_flight.dec()
        outcome = children.outcomes.get(stats.outcome)
        if outcome is None:
            outcome = children.outcomes[stats.outcome] = self.streams.labels(
                model, stats.outcome.value)
        outcome.inc()
        if stats.first_event_after is not None:
            children.ttft.observe(stats.first_event_after)
        children.duration.observe(stats.duration)
        children.chunks.inc(stats.chunks)
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
