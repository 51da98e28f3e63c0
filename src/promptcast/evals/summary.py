"""A run's figures, added up as cells and judgements come in; the texts themselves are not kept.

Per prompt: the rule pass rate (over the cases that have rules), the mean
judge score, pairwise wins, ties and losses with 95 % Wilson intervals,
tokens, cost where the model is priced, and latency percentiles.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from promptcast.evals.stats import mean, percentile, wilson
from promptcast.models import ModelSpec


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _rate(count: int, total: int) -> dict[str, Any]:
    interval = wilson(count, total)
    return {"rate": _round(count / total) if total else None,
            "interval": [_round(interval[0]), _round(interval[1])] if interval else None}


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported: int = 0  # completions whose upstream reported no usage

    def add(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        if prompt_tokens is None or completion_tokens is None:
            self.unreported += 1
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def as_json(self) -> dict[str, int]:
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
                "unreported": self.unreported}

    def cost(self, spec: ModelSpec) -> float | None:
        value = spec.cost(self.prompt_tokens, self.completion_tokens)
        return None if value is None else round(value, 6)


@dataclass(slots=True)
class PromptTally:
    name: str
    cells: int = 0
    errors: int = 0
    rules_checked: int = 0
    rules_passed: int = 0
    # Arrays, not lists: 8 bytes a figure rather than an object each (a run keeps them all).
    scores: array[int] = field(default_factory=lambda: array("b"))
    judge_errors: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    inconsistent: int = 0
    pair_errors: int = 0
    usage: Usage = field(default_factory=Usage)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    first_token_ms: array[float] = field(default_factory=lambda: array("d"))


@dataclass(slots=True)
class PairTally:
    a: str
    b: str
    wins_a: int = 0
    wins_b: int = 0
    ties: int = 0
    inconsistent: int = 0
    errors: int = 0


class Tally:
    """The running totals of one run."""

    def __init__(self, prompts: list[str], pairs: list[tuple[str, str]]) -> None:
        self.prompts = {name: PromptTally(name) for name in prompts}
        self.pairs = {pair: PairTally(*pair) for pair in pairs}
        self.judge_usage = Usage()
        self.judge_calls = 0

    def cell(self, prompt: str, *, error: bool, checks: list[bool] | None = None,
             prompt_tokens: int | None = None, completion_tokens: int | None = None,
             latency_s: float | None = None, first_token_s: float | None = None) -> None:
        """One finished cell: `checks` holds each rule's pass (empty: the case has none)."""
        tally = self.prompts[prompt]
        tally.cells += 1
        if error:
            tally.errors += 1
            return
        if checks:
            tally.rules_checked += 1
            tally.rules_passed += all(checks)
        tally.usage.add(prompt_tokens, completion_tokens)
        if latency_s is not None:
            tally.latencies_ms.append(latency_s * 1000)
        if first_token_s is not None:
            tally.first_token_ms.append(first_token_s * 1000)

    def judge_call(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        self.judge_calls += 1
        self.judge_usage.add(prompt_tokens, completion_tokens)

    def score(self, prompt: str, score: int | None) -> None:
        """One score judgement; None: the judge failed (or there was no answer to judge)."""
        tally = self.prompts[prompt]
        if score is None:
            tally.judge_errors += 1
        else:
            tally.scores.append(score)

    def verdict(self, pair: tuple[str, str], winner: str | None, consistent: bool) -> None:
        """One pair's verdict over both orders: a name, "tie", or None for an error."""
        a, b = pair
        tally = self.pairs[pair]
        if winner is None:
            tally.errors += 1
            self.prompts[a].pair_errors += 1
            self.prompts[b].pair_errors += 1
            return
        if winner == "tie":
            tally.ties += 1
            tally.inconsistent += not consistent
            for name in pair:
                self.prompts[name].ties += 1
                self.prompts[name].inconsistent += not consistent
            return
        loser = b if winner == a else a
        if winner == a:
            tally.wins_a += 1
        else:
            tally.wins_b += 1
        self.prompts[winner].wins += 1
        self.prompts[loser].losses += 1

    def summary(self, *, model: ModelSpec, judge: ModelSpec | None, pairwise: bool,
                cases: int, duration_s: float) -> dict[str, Any]:
        """The `event: summary` payload."""
        prompts = [self._prompt_summary(t, model, pairwise) for t in self.prompts.values()]
        costs = [p["cost"] for p in prompts]
        judge_cost = self.judge_usage.cost(judge) if judge is not None else None
        total_cost = (round(sum(costs) + (judge_cost or 0), 6)
                      if all(c is not None for c in costs)
                      and (judge is None or judge_cost is not None) else None)
        return {
            "model": model.name,
            "judge": judge.name if judge is not None else None,
            "pairwise": pairwise,
            "cases": cases,
            "cells": sum(t.cells for t in self.prompts.values()),
            "duration_ms": round(duration_s * 1000, 1),
            "prompts": prompts,
            "pairs": [self._pair_summary(t) for t in self.pairs.values()],
            "judge_usage": ({"calls": self.judge_calls, "tokens": self.judge_usage.as_json(),
                             "cost": judge_cost} if judge is not None else None),
            "cost": total_cost,
        }

    @staticmethod
    def _prompt_summary(t: PromptTally, model: ModelSpec, pairwise: bool) -> dict[str, Any]:
        compared = t.wins + t.ties + t.losses
        out: dict[str, Any] = {
            "name": t.name,
            "cells": t.cells,
            "errors": t.errors,
            "rules": {"checked": t.rules_checked, "passed": t.rules_passed,
                      "pass_rate": _rate(t.rules_passed, t.rules_checked)["rate"],
                      "interval": _rate(t.rules_passed, t.rules_checked)["interval"]},
            "judge": {"scored": len(t.scores), "errors": t.judge_errors,
                      "mean": _round(mean(t.scores), 3)},
            "pairwise": None,
            "tokens": t.usage.as_json(),
            "cost": t.usage.cost(model),
            "latency_ms": {"p50": _round(percentile(t.latencies_ms, 50), 1),
                           "p95": _round(percentile(t.latencies_ms, 95), 1)},
            "first_token_ms": {"p50": _round(percentile(t.first_token_ms, 50), 1),
                               "p95": _round(percentile(t.first_token_ms, 95), 1)},
        }
        if pairwise:
            win, tie, loss = (_rate(n, compared) for n in (t.wins, t.ties, t.losses))
            out["pairwise"] = {
                "compared": compared, "wins": t.wins, "ties": t.ties, "losses": t.losses,
                "inconsistent": t.inconsistent, "errors": t.pair_errors,
                "win_rate": win["rate"], "win_interval": win["interval"],
                "tie_rate": tie["rate"], "tie_interval": tie["interval"],
                "loss_rate": loss["rate"], "loss_interval": loss["interval"],
            }
        return out

    @staticmethod
    def _pair_summary(t: PairTally) -> dict[str, Any]:
        compared = t.wins_a + t.wins_b + t.ties
        a, b = _rate(t.wins_a, compared), _rate(t.wins_b, compared)
        return {"pair": [t.a, t.b], "compared": compared,
                "wins": {t.a: t.wins_a, t.b: t.wins_b}, "ties": t.ties,
                "inconsistent": t.inconsistent, "errors": t.errors,
                "win_rate": {t.a: a["rate"], t.b: b["rate"]},
                "win_interval": {t.a: a["interval"], t.b: b["interval"]}}
