"""Prometheus metrics, one registry per app; recorded per stream and per error, never per chunk.

The values are plain counters in this process, turned into Prometheus
families only when `/metrics` is scraped: `prometheus_client`'s metric
objects take a lock and several calls per update, and a stream's start and
end are the costliest part of a short stream (docs/benchmarks.md).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from promptcast.relay.stats import StreamStats
from promptcast.storage.recorder import Recorder

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`0.05`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are upper bounds, inclusive: `le`.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((_le(bound), total))
        return out


class _ModelMetrics:
    """One model's figures."""

    __slots__ = ("chunks", "duration", "in_flight", "outcomes", "tokens", "ttft")

    def __init__(self) -> None:
        self.in_flight = 0
        self.ttft = _Histogram(_TTFT_BUCKETS)
        self.duration = _Histogram(_DURATION_BUCKETS)
        self.chunks = 0
        self.outcomes: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()


class Metrics:
    """The counters an operator watches; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self._models: dict[str, _ModelMetrics] = {}
        self._errors: Counter[tuple[str, str]] = Counter()
        self.recorder: Recorder | None = None  # the library's run recorder, when on
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def _of(self, model: str) -> _ModelMetrics:
        children = self._models.get(model)
        if children is None:
            children = self._models[model] = _ModelMetrics()
        return children

    def started(self, model: str) -> None:
        self._of(model).in_flight += 1

    def finished(self, stats: StreamStats, model: str) -> None:
        children = self._of(model)
        children.in_flight -= 1
        children.outcomes[stats.outcome] += 1  # a StrEnum: counted as its value
        if stats.first_event_after is not None:
            children.ttft.observe(stats.first_event_after)
        children.duration.observe(stats.duration)
        children.chunks += stats.chunks
        if stats.prompt_tokens:
            children.tokens["prompt"] += stats.prompt_tokens
        if stats.completion_tokens:
            children.tokens["completion"] += stats.completion_tokens
        if stats.error_code:
            self.error(model, stats.error_code)

    def error(self, model: str, code: str) -> None:
        self._errors[model, code] += 1

    def collect(self) -> Iterator[Metric]:
        """The families, built from the counters at scrape time (the registry calls this)."""
        in_flight = GaugeMetricFamily("promptcast_streams_in_flight",
                                      "Streams being relayed now", labels=["model"])
        streams = CounterMetricFamily("promptcast_streams", "Finished streams by outcome",
                                      labels=["model", "outcome"])
        ttft = HistogramMetricFamily("promptcast_time_to_first_token_seconds",
                                     "Time from request to the first upstream event",
                                     labels=["model"])
        duration = HistogramMetricFamily("promptcast_stream_duration_seconds",
                                         "Time from request to the terminal frame",
                                         labels=["model"])
        chunks = CounterMetricFamily("promptcast_chunks", "Chunks relayed", labels=["model"])
        tokens = CounterMetricFamily("promptcast_tokens",
                                     "Tokens reported by the upstream's usage",
                                     labels=["model", "kind"])
        errors = CounterMetricFamily("promptcast_errors",
                                     "Errors by code, before or during a stream (upstream_* "
                                     "are the upstream's)", labels=["model", "code"])
        for model, m in self._models.items():
            in_flight.add_metric([model], m.in_flight)
            for outcome, count in m.outcomes.items():
                streams.add_metric([model, outcome], count)
            ttft.add_metric([model], m.ttft.buckets(), m.ttft.sum)
            duration.add_metric([model], m.duration.buckets(), m.duration.sum)
            chunks.add_metric([model], m.chunks)
            for kind, count in m.tokens.items():
                tokens.add_metric([model, kind], count)
        for (model, code), count in self._errors.items():
            errors.add_metric([model, code], count)
        yield from (in_flight, streams, ttft, duration, chunks, tokens, errors)
        if self.recorder is not None:
            yield from _recorder_families(self.recorder)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _recorder_families(recorder: Recorder) -> Iterator[Metric]:
    """The run recorder's counters (issue 20): written, dropped, waiting."""
    written = CounterMetricFamily("promptcast_run_records_written",
                                  "Run records written to the library's database")
    written.add_metric([], recorder.written)
    dropped = CounterMetricFamily("promptcast_run_records_dropped",
                                  "Run records dropped: the queue for the database was full")
    dropped.add_metric([], recorder.dropped)
    queued = GaugeMetricFamily("promptcast_run_records_queued",
                               "Run records waiting for the database")
    queued.add_metric([], recorder.queued)
    yield from (written, dropped, queued)
