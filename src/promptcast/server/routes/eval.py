"""POST /eval: an evaluation run, streamed as events through the same relay as every stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from promptcast.errors import PromptcastError
from promptcast.evals.complete import CompletionLimits
from promptcast.evals.plan import PlanLimits, parse_plan
from promptcast.evals.runner import EvalRun
from promptcast.relay.relay import Limits, Upstream
from promptcast.server.http import error_response, read_json, request_id_of, runtime_of
from promptcast.server.start import Kind, Start
from promptcast.server.streaming import StartResponse
from promptcast.settings import Settings
from promptcast.wire.pump import Pump


def run_limits(settings: Settings, completion: CompletionLimits) -> Limits:
    """A run's limits as one stream: the whole run within `eval_timeout`; between two events,
    no longer than one completion can take (each cell enforces a single stream's limits)."""
    gap = completion.run_gap(settings.eval_timeout)
    return Limits(first_token_timeout=gap, idle_timeout=gap,
                  total_timeout=settings.eval_timeout,
                  heartbeat_interval=settings.heartbeat_interval)


async def eval_run(request: Request) -> Response:
    """POST /eval: answer every case with every prompt, check, judge, and stream it all."""
    rt = runtime_of(request)
    request_id = request_id_of(request)
    settings = rt.settings
    model = ""
    try:
        data = await read_json(request, settings.eval_max_body_bytes)
        asked = data.get("model")
        model = asked if isinstance(asked, str) and asked in settings.models else ""
        plan = parse_plan(data, models=settings.models, limits=PlanLimits.from_settings(settings),
                          default_judge_model=settings.eval_judge)
    except PromptcastError as exc:
        rt.metrics.error(model, exc.error_code)
        return error_response(exc, request_id)
    completion = CompletionLimits.from_settings(settings)
    run = EvalRun(plan, rt.service, settings.models, completion, request_id=request_id)

    async def opening() -> Upstream:
        # The run is iterated: one task pushes its events to the relay.
        return Pump(aiter(run), run.aclose)

    return StartResponse(rt, Start(Kind.STREAM, plan.model, "eval", request_id, opening,
                                   label=model, limits=run_limits(settings, completion)))
