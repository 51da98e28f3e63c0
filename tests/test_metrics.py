"""/metrics, /readyz and /healthz as an operator's scraper and probes see them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from promptcast.ops.metrics import Metrics
from promptcast.relay.relay import StreamStats

from .conftest import RedisServer, RunningServer
from .sse_client import post_stream
from .upstream_double import Script, UpstreamDouble, chunk_json, event

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_:]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            got = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if got == want:
                return float(match[3])
    return 0.0


async def test_metrics_count_streams_outcomes_tokens_and_errors(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(
        Script.chat(["a", "b", "c"]),
        Script.raw(event(chunk_json("x")), b"data: {broken\n\n"),
        Script.error(429, "slow down", retry_after="3"),
    )
    body = {"prompt": "hi"}
    assert (await post_stream(f"{server.url}/optimize-stream", body)).terminal.data == "[DONE]"
    assert (await post_stream(f"{server.url}/optimize-stream", body)).terminal.event == "error"
    assert (await post_stream(f"{server.url}/optimize-stream", body)).status == 429
    assert (await post_stream(f"{server.url}/optimize-stream",
                              {"prompt": "x", "model": "nope"})).status == 404
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "promptcast_streams_total", model="scripted", outcome="done") == 1
    assert sample(text, "promptcast_streams_total", model="scripted", outcome="error") == 1
    assert sample(text, "promptcast_streams_in_flight", model="scripted") == 0
    assert sample(text, "promptcast_tokens_total", model="scripted", kind="completion") == 3
    assert sample(text, "promptcast_tokens_total", model="scripted", kind="prompt") == 12
    assert sample(text, "promptcast_errors_total", model="scripted",
                  code="bad_upstream_stream") == 1
    assert sample(text, "promptcast_errors_total", model="scripted",
                  code="upstream_rate_limited") == 1
    assert sample(text, "promptcast_errors_total", model="nope", code="model_not_found") == 1
    assert sample(text, "promptcast_time_to_first_token_seconds_count", model="scripted") == 2
    assert sample(text, "promptcast_chunks_total", model="scripted") >= 5


async def test_in_flight_counts_open_streams(server: RunningServer,
                                             upstream: UpstreamDouble) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["a", gate, "b"]))
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", f"{server.url}/optimize-stream",
                                 json={"prompt": "x"}) as response:
            parts = response.aiter_raw()
            await parts.__anext__()
            during = (await client.get(f"{server.url}/metrics")).text
            gate.set()
            async for _ in parts:
                pass
        after = (await client.get(f"{server.url}/metrics")).text
    assert sample(during, "promptcast_streams_in_flight", model="scripted") == 1
    assert sample(after, "promptcast_streams_in_flight", model="scripted") == 0


async def test_readyz_reports_the_store_and_the_default_model(
    serve: Callable[..., RunningServer], redis_server: RedisServer
) -> None:
    server = serve({"PROMPTCAST_REDIS_URL": redis_server.url})
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{server.url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready",
                                "checks": {"store": "ok", "default_model": "ok"}}
        redis_server.stop()
        down = await client.get(f"{server.url}/readyz")
        assert down.status_code == 503
        assert "Redis" in down.json()["checks"]["store"]
        assert (await client.get(f"{server.url}/healthz")).json() == {"status": "ok"}


async def test_readyz_names_the_key_the_default_model_lacks(
    serve: Callable[..., RunningServer]
) -> None:
    server = serve({"PROMPTCAST_DEFAULT_MODEL": "keyed"})
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{server.url}/readyz")).json()
    assert body["status"] == "unavailable"
    assert body["checks"]["default_model"] == "keyed: set SCRIPTED_KEY"
    assert json.dumps(body).count("SECRET") == 0


async def test_no_operator_endpoint_shows_a_configured_key(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    key = "sk-test-VISIBLE-SECRET-123456"
    server = serve({"SCRIPTED_KEY": key, "PROMPTCAST_DEFAULT_MODEL": "keyed"})
    upstream.enqueue(Script.error(500, f"backend saw key {key}"))
    failed = await post_stream(f"{server.url}/optimize-stream", {"prompt": "x"})
    assert failed.status == 502 and key.encode() not in failed.raw
    async with httpx.AsyncClient() as client:
        for path in ("/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json"):
            body = (await client.get(f"{server.url}{path}")).text
            assert key not in body and "VISIBLE-SECRET" not in body, path


def test_histogram_buckets_are_inclusive_upper_bounds_and_cumulative() -> None:
    metrics = Metrics()
    for duration in (0.5, 0.6, 400.0):
        metrics.started("m")
        stats = StreamStats("s", 0.0)
        stats.duration = duration
        metrics.finished(stats, "m")
    text = metrics.render().decode()
    name = "promptcast_stream_duration_seconds"
    assert sample(text, f"{name}_bucket", model="m", le="0.5") == 1  # 0.5 ≤ 0.5
    assert sample(text, f"{name}_bucket", model="m", le="1.0") == 2
    assert sample(text, f"{name}_bucket", model="m", le="300.0") == 2
    assert sample(text, f"{name}_bucket", model="m", le="+Inf") == 3
    assert sample(text, f"{name}_count", model="m") == 3
    assert sample(text, f"{name}_sum", model="m") == pytest.approx(401.1)
    assert sample(text, "promptcast_streams_total", model="m", outcome="cancelled") == 3
    # No `_created` series: each would be one more line per label set, for nobody.
    assert "_created" not in text
