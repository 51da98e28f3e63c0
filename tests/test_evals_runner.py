"""The run itself, in this process, on the real model service against the scripted upstream:
flat memory over a long run, stopping, ordering; and one real run on the embedded model."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from promptcast.evals.complete import CompletionLimits
from promptcast.evals.plan import PlanLimits, parse_plan
from promptcast.evals.runner import EvalRun
from promptcast.providers import ProviderRegistry
from promptcast.redact import Redactor
from promptcast.service.model_service import ModelService
from promptcast.settings import Settings
from promptcast.wire.http_client import HTTPClient

from .conftest import models_file
from .eval_double import EvalUpstream
from .upstream_double import UpstreamDouble

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def service_for(settings: Settings) -> AsyncIterator[ModelService]:
    client = HTTPClient(connect_timeout=settings.connect_timeout)
    registry = ProviderRegistry(settings, client, Redactor([]))
    try:
        yield ModelService(settings.models, registry)
    finally:
        await registry.aclose()
        await client.aclose()


def settings_on(upstream: UpstreamDouble, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.from_env({"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
                              "PROMPTCAST_DEFAULT_MODEL": "scripted"}, **overrides)


def make_run(settings: Settings, service: ModelService, data: dict[str, Any]) -> EvalRun:
    plan = parse_plan(data, models=settings.models, limits=PlanLimits.from_settings(settings))
    return EvalRun(plan, service, settings.models, CompletionLimits.from_settings(settings))


ANSWER_CHARS = 4000


async def _peak_of_run(settings: Settings, cases: int) -> tuple[int, int]:
    """The traced memory peak of a run of 2 prompts x `cases` judged cells, and its cells."""
    data = {"prompts": [{"name": "a", "text": "A\nbot"}, {"name": "b", "text": "B\nbot"}],
            "cases": [{"message": f"m{i}", "contains": "x"} for i in range(cases)],
            "model": "scripted", "judge": "scripted", "pairwise": True, "concurrency": 8}
    cells = 0
    async with service_for(settings) as service:
        run = make_run(settings, service, data)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            async for event in run:
                cells += event.event == "cell"
        finally:
            await run.aclose()
        return tracemalloc.get_traced_memory()[1] - base, cells


async def test_the_memory_of_a_500_cell_run_stays_flat(
    upstream: UpstreamDouble, tmp_path: Path
) -> None:
    # Every answer is 4,000 characters: a run that kept its texts would hold
    # another 1.8 MB at 500 cells than at 50.
    answers = {(p, f"m{i}"): f"[score=5][rank={i % 3}]" + "x" * ANSWER_CHARS
               for p in ("A", "B") for i in range(250)}
    upstream.responder = EvalUpstream(answers)
    upstream.record = False
    settings = settings_on(upstream, tmp_path)
    tracemalloc.start()
    try:
        await _peak_of_run(settings, 5)  # warm-up: imports, connections, caches
        small, small_cells = await _peak_of_run(settings, 25)
        large, large_cells = await _peak_of_run(settings, 250)
    finally:
        tracemalloc.stop()
    assert (small_cells, large_cells) == (50, 500)
    assert large - small < 450 * ANSWER_CHARS / 4, (small, large)


async def test_aclose_cancels_every_stream_and_nothing_more_starts(
    upstream: UpstreamDouble, tmp_path: Path
) -> None:
    answers = {(p, f"m{i}"): "slow answer" for p in ("A", "B") for i in range(10)}
    upstream.responder = EvalUpstream(answers, hang=True)
    settings = settings_on(upstream, tmp_path)
    data = {"prompts": [{"name": "a", "text": "A\nbot"}, {"name": "b", "text": "B\nbot"}],
            "cases": [{"message": f"m{i}"} for i in range(10)], "model": "scripted",
            "judge": False, "concurrency": 3, "deltas": True}
    async with service_for(settings) as service:
        run = make_run(settings, service, data)
        events = aiter(run)
        started = set()
        while len(started) < 3:  # every worker's answer has begun
            event = await anext(events)
            assert event.event == "delta"
            started.add((json.loads(event.data)["prompt"], json.loads(event.data)["case"]))
        await run.aclose()
        assert await upstream.until(lambda: upstream.client_closed == 3, 1.0)
    assert await upstream.until(lambda: upstream.open_connections == 0, 1.0)
    assert len(upstream.requests) == 3


async def test_answers_are_asked_for_case_by_case_so_pairs_finish_early(
    upstream: UpstreamDouble, tmp_path: Path
) -> None:
    answers = {(p, f"m{i}"): f"[rank={i}]" for p in ("A", "B") for i in range(6)}
    upstream.responder = EvalUpstream(answers)
    settings = settings_on(upstream, tmp_path)
    data = {"prompts": [{"name": "a", "text": "A\nbot"}, {"name": "b", "text": "B\nbot"}],
            "cases": [{"message": f"m{i}"} for i in range(6)], "model": "scripted",
            "judge": "scripted", "pairwise": True, "concurrency": 1}
    async with service_for(settings) as service:
        run = make_run(settings, service, data)
        kinds = [(e.event, json.loads(e.data).get("case")) async for e in run
                 if e.event in ("cell", "judgement")]
    # With one worker, judgements go first: case 0's answer and its score, the other answer
    # and its score, their pair (both orders), and only then case 1.
    assert kinds[:6] == [("cell", 0), ("judgement", 0), ("cell", 0), ("judgement", 0),
                         ("judgement", 0), ("cell", 1)]


@pytest.mark.llama
async def test_a_real_run_on_the_embedded_model_has_the_right_structure(tmp_path: Path) -> None:
    settings = Settings.from_env({}, local_max_tokens=24)
    data = {"prompts": [{"name": "short", "text": "You are a shop's support bot. Be brief."},
                        {"name": "kind", "text": "You are a kind support bot for {{shop}}."}],
            "cases": [{"message": "Where is my order?", "contains": "order",
                       "rubric": "asks for the order number"}],
            "vars": {"shop": "Acme"}, "model": "local", "judge": "local", "pairwise": True}
    async with service_for(settings) as service:
        run = make_run(settings, service, data)
        events = [(e.event, e.data) async for e in run]
    kinds = [kind for kind, _ in events]
    assert kinds.count("cell") == 2 and kinds.count("summary") == 1
    assert events[-1] == ("message", "[DONE]")
    for kind, raw in events:
        if kind == "cell":
            cell = json.loads(raw)
            assert ("text" in cell) != ("error" in cell)
            assert all(check["kind"] == "contains" for check in cell["checks"])
        elif kind == "judgement":
            judgement = json.loads(raw)
            # The tiny model's reply may or may not parse: a score, or an error with the raw text.
            if "pair" in judgement:
                assert ("winner" in judgement) != ("error" in judgement)
            else:
                assert ("score" in judgement) != ("error" in judgement)
                if "score" in judgement:
                    assert 0 <= judgement["score"] <= 10
    summary = json.loads(events[-2][1])
    assert [p["name"] for p in summary["prompts"]] == ["short", "kind"]
    assert summary["judge"] == "local" and summary["prompts"][0]["pairwise"] is not None


def test_retry_after_reads_seconds_dates_and_backs_off_without_one() -> None:
    from promptcast.errors import UpstreamError
    from promptcast.evals.complete import retry_after

    def error(value: str | None) -> UpstreamError:
        return UpstreamError("429", upstream_status=429,
                             headers={"Retry-After": value} if value is not None else {})

    assert retry_after(error("7"), 0) == 7.0
    assert retry_after(error("Wed, 21 Oct 2015 07:28:10 GMT"), 0,
                       now=1445412480.0) == pytest.approx(10.0)
    assert [retry_after(error(None), n) for n in range(3)] == [1.0, 2.0, 4.0]
    assert retry_after(error("soon"), 1) == 2.0
