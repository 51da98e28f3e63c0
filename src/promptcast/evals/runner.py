"""A run as an event source: cells answered, checked and judged by a bounded pool of workers.

    EvalRun ── __aiter__: `event: cell` / `delta` / `judgement`, one `summary`, `[DONE]`
      ├── jobs:    judgements first (pairs, then scores: judging first lets a case's
      │            texts go as soon as possible), from a priority queue; else the
      │            next answer, case by case, made when a worker is free for it
      ├── workers: `concurrency` tasks; each takes a job, streams its completion
      │            (`complete.py`), and puts its events on the way out
      └── out:     a bounded queue to the reader: a slow client slows the workers,
                   so nothing piles up

`aclose()` cancels every worker, and with it every stream in flight. A cell's
text is held only until its cell, judgements and pairs are out; the summary
keeps figures (`summary.Tally`), never texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from promptcast.errors import PromptcastError
from promptcast.evals.checks import run_checks
from promptcast.evals.complete import (
    ChatOpener,
    Completion,
    CompletionFailed,
    CompletionLimits,
    complete,
)
from promptcast.evals.judge import (
    JudgeReplyError,
    pair_messages,
    parse_score,
    parse_verdict,
    score_messages,
)
from promptcast.evals.messages import cell_messages, fill
from promptcast.evals.plan import EvalPlan
from promptcast.evals.summary import Tally
from promptcast.models import ModelTable
from promptcast.providers.base import ChatRequest
from promptcast.wire.sse import Event

log = logging.getLogger("promptcast.evals")

DONE = Event(data="[DONE]")
# The judge is asked for a short JSON object: a cap keeps a rambling one cheap.
JUDGE_MAX_TOKENS = 300
_PAIR, _SCORE = 0, 1


def _event(kind: str, payload: dict[str, Any]) -> Event:
    return Event(data=orjson.dumps(payload).decode(), event=kind)


def _error(exc: PromptcastError) -> dict[str, str]:
    return {"code": exc.error_code, "message": exc.message}


NO_ANSWER = {"code": "no_answer", "message": "the answer failed, so there is nothing to judge"}
# Told of each `cell`, `judgement` and `summary` payload as it goes out (not of deltas).
Observer = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class _CaseState:
    """A case's answers, kept only while pairs of them remain to be judged."""

    waiting: int
    answers: dict[int, str | None] = field(default_factory=dict)


class EvalRun:
    """One evaluation run; iterate it for its events, `aclose()` it to stop everything."""

    def __init__(self, plan: EvalPlan, opener: ChatOpener, models: ModelTable,
                 limits: CompletionLimits, *, request_id: str | None = None,
                 observe: Observer | None = None) -> None:
        self.plan = plan
        self._observe = observe
        self._opener = opener
        self._models = models
        self._limits = limits
        self._request_id = request_id
        self._tally = Tally([p.name for p in plan.prompts],
                            [(plan.prompts[a].name, plan.prompts[b].name)
                             for a, b in plan.pairs()])
        self._jobs: asyncio.PriorityQueue[tuple[int, int, Callable[[], Awaitable[None]]]] = (
            asyncio.PriorityQueue())
        self._order = itertools.count()
        # Jobs not yet done: every answer, and each judgement once it is queued.
        self._pending = plan.cells
        self._next_answer = 0
        # Room for each worker's next event or two: past that, workers wait for the reader.
        self._out: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=2 * plan.concurrency + 2)
        self._workers: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._cases: dict[int, _CaseState] = {}
        self._started = 0.0
        self._closed = False

    # -- the event source ----------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        self._start()
        while True:
            event = await self._out.get()
            if event is None:
                break
            yield event
        if self._failure is not None:
            raise self._failure
        summary = self.summary()
        self._observed("summary", summary)
        yield _event("summary", summary)
        yield DONE

    def summary(self) -> dict[str, Any]:
        """The figures so far (all of them once the run has ended)."""
        plan = self.plan
        return self._tally.summary(
            model=self._models.get_spec(plan.model),
            judge=self._models.get_spec(plan.judge) if plan.judge else None,
            pairwise=plan.pairwise, cases=len(plan.cases),
            duration_s=time.monotonic() - self._started,
        )

    async def aclose(self) -> None:
        """Stop: cancel every worker, and so every stream in flight; wait until they are gone."""
        self._closed = True
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    # -- scheduling ----------------------------------------------------------------

    def _start(self) -> None:
        self._started = time.monotonic()
        plan = self.plan
        if plan.cells == 0:
            self._out.put_nowait(None)
            return
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"eval-worker-{n}")
                         for n in range(plan.concurrency)]

    def _add(self, priority: int, job: Callable[[], Awaitable[None]]) -> None:
        self._pending += 1
        self._jobs.put_nowait((priority, next(self._order), job))

    def _next_job(self) -> Callable[[], Awaitable[None]] | None:
        """A queued judgement, else the next answer (made only now: the plan is not copied
        into a queue of jobs), else None."""
        if not self._jobs.empty():
            return self._jobs.get_nowait()[2]
        if self._next_answer < self.plan.cells:
            index = self._next_answer
            self._next_answer += 1
            prompts = len(self.plan.prompts)
            case_index, prompt_index = divmod(index, prompts)
            if self.plan.pairwise and prompt_index == 0:
                self._cases[case_index] = _CaseState(waiting=prompts)
            return self._answer_job(prompt_index, case_index)
        return None

    async def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                _, _, job = await self._jobs.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A bug, not a model's failure (those are events): end the run with it.
                log.exception("evaluation job failed")
                if self._failure is None:
                    self._failure = exc
                    await self._out.put(None)
                return
            self._pending -= 1
            if self._pending == 0:
                await self._out.put(None)

    async def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        if kind != "delta":
            self._observed(kind, payload)
        await self._out.put(_event(kind, payload))

    def _observed(self, kind: str, payload: dict[str, Any]) -> None:
        if self._observe is None:
            return
        try:
            self._observe(kind, payload)
        except Exception:
            # Whoever watches (a recording) must never break the run it watches.
            log.exception("an evaluation run's observer failed; it is dropped")
            self._observe = None

    async def _complete(self, request: ChatRequest,
                        on_delta: Callable[[str], Awaitable[None]] | None = None
                        ) -> Completion | CompletionFailed:
        try:
            return await complete(self._opener, request, self._limits, on_delta=on_delta)
        except CompletionFailed as exc:
            return exc

    # -- the jobs ------------------------------------------------------------------

    def _answer_job(self, prompt_index: int, case_index: int) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await self._answer(prompt_index, case_index)
        return job

    async def _answer(self, prompt_index: int, case_index: int) -> None:
        plan = self.plan
        prompt, case = plan.prompts[prompt_index], plan.cases[case_index]
        values = plan.values_for(case)
        opening = plan.opening_for(prompt, case)
        messages = cell_messages(prompt.text, case, values, opening)
        request = ChatRequest(model=plan.model, messages=messages, request_id=self._request_id)
        on_delta = None
        if plan.deltas:
            async def on_delta(text: str) -> None:
                await self._emit("delta", {"prompt": prompt.name, "case": case_index,
                                           "text": text})
        result = await self._complete(request, on_delta)
        cell: dict[str, Any] = {"prompt": prompt.name, "case": case_index}
        answer: str | None = None
        if isinstance(result, CompletionFailed):
            cell.update(checks=[], error=_error(result.error), attempts=result.attempts)
            self._tally.cell(prompt.name, error=True)
        else:
            answer = result.text
            checks = run_checks(answer, case.expect,
                                fill(opening, values) if opening else None)
            cell.update(
                text=answer, checks=[c.as_json() for c in checks],
                latency_ms=round(result.latency_s * 1000, 1),
                first_token_ms=(round(result.first_token_s * 1000, 1)
                                if result.first_token_s is not None else None),
                # Not "usage": the relay reads a `"usage":{` in an event as the
                # stream's own token count, and a cell's is not the run's.
                tokens=({"prompt": result.prompt_tokens, "completion": result.completion_tokens}
                        if result.prompt_tokens is not None else None),
                finish_reason=result.finish_reason, attempts=result.attempts,
            )
            self._tally.cell(prompt.name, error=False, checks=[c.passed for c in checks],
                             prompt_tokens=result.prompt_tokens,
                             completion_tokens=result.completion_tokens,
                             latency_s=result.latency_s, first_token_s=result.first_token_s)
        await self._emit("cell", cell)
        if plan.judge is not None:
            system = messages[0].content
            self._add(_SCORE, lambda: self._score(prompt_index, case_index, system, answer))
        state = self._cases.get(case_index)
        if state is not None:
            state.answers[prompt_index] = answer
            state.waiting -= 1
            if state.waiting == 0:
                del self._cases[case_index]
                for a, b in plan.pairs():
                    first, second = state.answers[a], state.answers[b]
                    self._add(_PAIR, self._pair_job(a, b, case_index, first, second))

    async def _judge(self, messages: Any) -> Completion | CompletionFailed:
        assert self.plan.judge is not None
        request = ChatRequest(model=self.plan.judge, messages=messages, temperature=0.0,
                              max_tokens=JUDGE_MAX_TOKENS, request_id=self._request_id)
        result = await self._complete(request)
        if isinstance(result, Completion):
            self._tally.judge_call(result.prompt_tokens, result.completion_tokens)
        return result

    async def _score(self, prompt_index: int, case_index: int, system: str,
                     answer: str | None) -> None:
        plan = self.plan
        prompt, case = plan.prompts[prompt_index], plan.cases[case_index]
        judgement: dict[str, Any] = {"prompt": prompt.name, "case": case_index}
        score: int | None = None
        if answer is None:
            judgement["error"] = NO_ANSWER
        else:
            result = await self._judge(score_messages(system, case.turns, answer,
                                                      case.expect.rubric))
            if isinstance(result, CompletionFailed):
                judgement["error"] = _error(result.error)
            else:
                try:
                    parsed = parse_score(result.text)
                except JudgeReplyError as exc:
                    judgement.update(error={"code": "judge_unparsable", "message": exc.message},
                                     raw=exc.raw)
                else:
                    score = parsed.score
                    judgement.update(score=parsed.score, reason=parsed.reason)
        self._tally.score(prompt.name, score)
        await self._emit("judgement", judgement)

    def _pair_job(self, a: int, b: int, case_index: int, answer_a: str | None,
                  answer_b: str | None) -> Callable[[], Awaitable[None]]:
        """The first of a pair's two jobs (one per order); the one that ends last reports."""
        plan = self.plan
        pair = _Pair(plan.prompts[a].name, plan.prompts[b].name, case_index)
        if answer_a is None or answer_b is None:
            async def no_answer() -> None:
                await self._pair_done(pair, {"error": NO_ANSWER})
            return no_answer
        rubric = plan.cases[case_index].expect.rubric
        turns = plan.cases[case_index].turns

        def order(x: str, y: str, x_text: str, y_text: str) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                result = await self._judge(pair_messages(turns, x_text, y_text, rubric))
                pair.results.append((x, y, result))
                if len(pair.results) == 2:
                    await self._pair_done(pair, _combine(pair))
            return job

        # The second order is a job of its own, so each judge stream holds a worker.
        self._add(_PAIR, order(pair.b, pair.a, answer_b, answer_a))
        return order(pair.a, pair.b, answer_a, answer_b)

    async def _pair_done(self, pair: _Pair, outcome: dict[str, Any]) -> None:
        judgement: dict[str, Any] = {"pair": [pair.a, pair.b], "case": pair.case, **outcome}
        self._tally.verdict((pair.a, pair.b), outcome.get("winner"),
                            bool(outcome.get("consistent")))
        await self._emit("judgement", judgement)


@dataclass(slots=True)
class _Pair:
    """One pair of prompts on one case: the judge's results in each order, as they come."""

    a: str
    b: str
    case: int
    results: list[tuple[str, str, Completion | CompletionFailed]] = field(default_factory=list)


def _combine(pair: _Pair) -> dict[str, Any]:
    """Both orders' results as one outcome: a verdict counts only if the orders agree."""
    # The pair's own order first, whichever of the two finished first.
    results = sorted(pair.results, key=lambda item: item[0] != pair.a)
    orders: list[dict[str, Any]] = []
    for x, y, result in results:
        if isinstance(result, CompletionFailed):
            return {"error": _error(result.error)}
        try:
            verdict = parse_verdict(result.text)
        except JudgeReplyError as exc:
            return {"error": {"code": "judge_unparsable", "message": exc.message},
                    "raw": exc.raw}
        orders.append({"shown": [x, y], "winner": {"A": x, "B": y, "tie": "tie"}[verdict.winner],
                       "reason": verdict.reason})
    consistent = orders[0]["winner"] == orders[1]["winner"]
    return {"winner": orders[0]["winner"] if consistent else "tie", "consistent": consistent,
            "orders": orders}


@contextlib.asynccontextmanager
async def running(run: EvalRun) -> AsyncIterator[EvalRun]:
    """Close `run` however the block ends (for callers that iterate it themselves)."""
    try:
        yield run
    finally:
        await run.aclose()
