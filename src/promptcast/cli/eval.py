"""`promptcast eval`: prompts x a test set, checked and judged, with a progress bar and a table.

In-process by default, or through a running promptcast's POST /eval with
`--server`. Exits 0 when the run completed and every threshold was met, 3
when a threshold was missed (so CI can gate on it), 1 when the run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptcast.evals.cases import case_json
from promptcast.evals.testset import TestSetError, load
from promptcast.settings import Settings
from promptcast.wire.sse import Decoder, Event

THRESHOLD_MISSED = 3


def register(commands: Any) -> None:
    """Add `eval` to the command parsers."""
    parser = commands.add_parser(
        "eval", help="evaluate prompts on a test set: rule checks, a judge, pairwise win rates",
        description="Answer every case of a test set with every prompt, check each answer "
                    "against the case's expectations, have a judge score it, and compare the "
                    "prompts pairwise. The last --prompt is the candidate the thresholds "
                    "apply to.")
    parser.add_argument("--prompt", action="append", required=True, metavar="FILE",
                        help="a prompt file (repeat: the first is the baseline, the last the "
                             "candidate; '-' reads standard input); named after the file")
    cases = parser.add_mutually_exclusive_group(required=True)
    cases.add_argument("--cases", type=Path, metavar="FILE",
                       help="the test set: .jsonl, .yaml/.yml or .json (docs/eval.md)")
    cases.add_argument("--testset", metavar="NAME",
                       help="a test set saved in the server's library, by name or id "
                            "(with --server)")
    parser.add_argument("--model", help="the model the bot runs on (default: the default model)")
    judge = parser.add_mutually_exclusive_group()
    judge.add_argument("--judge", metavar="MODEL",
                       help="the judge model (default: the strongest keyed model, else local)")
    judge.add_argument("--no-judge", action="store_true", help="rule checks only")
    parser.add_argument("--pairwise", action="store_true",
                        help="judge the prompts' answers against each other, in both orders")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="answers and judgements in flight at once (default 4)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for a {{NAME}} placeholder in every case (repeatable)")
    parser.add_argument("--opening", help="the bot's opening line (unless a case gives its own)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write the summary and every cell and judgement to FILE")
    parser.add_argument("--min-pass-rate", type=_rate, metavar="R",
                        help="exit 3 if the candidate's rule pass rate is below R (0 to 1)")
    parser.add_argument("--min-win-rate", type=_rate, metavar="R",
                        help="exit 3 if the candidate's pairwise win rate is below R (0 to 1)")
    parser.add_argument("--server", metavar="URL",
                        help="run through a running promptcast's POST /eval at URL")
    parser.add_argument("--api-key", metavar="KEY", help="the server's API key (with --server)")
    parser.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    parser.set_defaults(run=run)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a rate from 0 to 1 (0.9 is 90 %)")
    return value


def _prompts(files: list[str]) -> list[dict[str, str]]:
    prompts, names = [], set()
    for number, name in enumerate(files, 1):
        if name == "-":
            text, stem = sys.stdin.read(), "stdin"
        else:
            path = Path(name)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TestSetError(f"cannot read the prompt {name}: {exc}") from None
            stem = path.stem
        label = stem if stem not in names else f"{stem}#{number}"
        names.add(label)
        prompts.append({"name": label, "text": text})
    return prompts


def build_body(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The POST /eval body of this command line (what runs in-process too)."""
    if args.testset is not None:
        # Found by the server, in the key's owner's library.
        body: dict[str, Any] = {"prompts": _prompts(args.prompt), "testset": args.testset,
                                "pairwise": args.pairwise}
        return _options(args, body, {}, None)
    testset = load(args.cases, max_case_chars=settings.eval_max_case_chars)
    body = {"prompts": _prompts(args.prompt),
            "cases": [case_json(case) for case in testset.cases],
            "pairwise": args.pairwise}
    return _options(args, body, dict(testset.vars), testset.opening)


def _options(args: argparse.Namespace, body: dict[str, Any], values: dict[str, str],
             opening: str | None) -> dict[str, Any]:
    """The run's options from the flags (over a YAML set's own `vars` and `opening`)."""
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise TestSetError(f"--var {item!r}: write it as NAME=VALUE")
        values[name] = value
    if args.model:
        body["model"] = args.model
    if args.no_judge:
        body["judge"] = False
    elif args.judge:
        body["judge"] = args.judge
    if args.concurrency is not None:
        body["concurrency"] = args.concurrency
    if values:
        body["vars"] = values
    opening = args.opening or opening
    if opening:
        body["opening"] = opening
    return body


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the evaluation; 0 if every threshold was met, 3 if one was missed, 1 on failure."""
    if args.min_win_rate is not None and not args.pairwise:
        print("promptcast: --min-win-rate needs --pairwise", file=sys.stderr)
        return 2
    if args.testset is not None and not args.server:
        print("promptcast: --testset names a test set saved on a server: give --server URL "
              "(or --cases FILE)", file=sys.stderr)
        return 2
    try:
        body = build_body(args, settings)
    except TestSetError as exc:
        print(f"promptcast: {exc}", file=sys.stderr)
        return 2
    if args.min_win_rate is not None and len(body["prompts"]) < 2:
        print("promptcast: --min-win-rate needs 2 or more --prompt", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, settings, body))


async def _run(args: argparse.Namespace, settings: Settings, body: dict[str, Any]) -> int:
    if args.server:
        return await _remote(args, body)
    return await _local(args, settings, body)


async def _local(args: argparse.Namespace, settings: Settings, body: dict[str, Any]) -> int:
    from promptcast.evals.complete import CompletionLimits
    from promptcast.evals.plan import PlanLimits, parse_plan
    from promptcast.evals.runner import EvalRun
    from promptcast.providers import ProviderRegistry
    from promptcast.redact import Redactor
    from promptcast.service.model_service import ModelService
    from promptcast.wire.http_client import HTTPClient

    plan = parse_plan(body, models=settings.models, limits=PlanLimits.from_settings(settings),
                      default_judge_model=settings.eval_judge)
    client = HTTPClient(connect_timeout=settings.connect_timeout)
    registry = ProviderRegistry(settings, client, Redactor(settings.models.secrets()))
    run = EvalRun(plan, ModelService(settings.models, registry), settings.models,
                  CompletionLimits.from_settings(settings))
    try:
        async with asyncio.timeout(settings.eval_timeout):
            return await _show(args, body, plan.judge is not None, aiter(run))
    finally:
        await run.aclose()
        await registry.aclose()
        await client.aclose()


async def _remote(args: argparse.Namespace, body: dict[str, Any]) -> int:
    headers = {"Accept": "text/event-stream"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), trust_env=False) as client,
        client.stream("POST", f"{args.server.rstrip('/')}/eval", json=body,
                      headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            try:
                error = response.json()["error"]
                field = f" (field: {error['field']})" if error.get("field") else ""
                message = f"{error['message']}{field}"
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            print(f"promptcast: {response.status_code}: {message}", file=sys.stderr)
            return 1

        async def events() -> AsyncIterator[Event]:
            decoder = Decoder()
            async for raw in response.aiter_bytes():
                for event in decoder.feed(raw):
                    yield event

        return await _show(args, body, body.get("judge") is not False, events())


async def _show(args: argparse.Namespace, body: dict[str, Any], judged: bool,
                events: AsyncIterator[Event]) -> int:
    """Follow the run's events with a progress bar; then the table, the file, the thresholds."""
    steps: int | None = None
    if "cases" in body:  # a saved test set's size is the server's to know
        cells = len(body["prompts"]) * len(body["cases"])
        pairs = len(body["prompts"]) * (len(body["prompts"]) - 1) // 2 if body["pairwise"] else 0
        steps = cells + (cells if judged else 0) + pairs * len(body["cases"])
    console = Console(stderr=True)
    record: dict[str, Any] = {"cells": [], "judgements": []}
    summary: dict[str, Any] | None = None
    failure: str | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("evaluating", total=steps)
        async for event in events:
            if event.event in ("error", "timeout"):
                payload = orjson.loads(event.data)
                failure = f"{event.event}: {payload.get('message')}"
                break
            if event.data == "[DONE]":
                break
            payload = orjson.loads(event.data)
            if event.event == "cell":
                record["cells"].append(payload)
                progress.advance(task)
            elif event.event == "judgement":
                record["judgements"].append(payload)
                progress.advance(task)
            elif event.event == "summary":
                summary = payload
        else:
            failure = "the run's stream was cut off before its end"
    if failure is not None or summary is None:
        print(f"promptcast: {failure or 'the run ended without a summary'}", file=sys.stderr)
        return 1
    # Not a terminal (a CI log, a file): wide enough that no figure wraps.
    Console(width=None if sys.stdout.isatty() else 160).print(summary_table(summary))
    if args.json is not None:
        source = ({"cases": body["cases"]} if "cases" in body
                  else {"testset": body["testset"]})
        record = {"summary": summary, "prompts": [p["name"] for p in body["prompts"]],
                  **source, **record}
        args.json.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return _thresholds(args, summary)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def summary_table(summary: dict[str, Any]) -> Table:
    """The summary as a table: one row per prompt."""
    table = Table(title=f"model {summary['model']}, judge {summary['judge'] or 'none'}, "
                        f"{summary['cases']} cases")
    for header in ("prompt", "rules passed", "judge mean", "win rate (95 % CI)", "tokens",
                   "cost", "latency p50 / p95", "errors"):
        table.add_column(header, justify="left" if header == "prompt" else "right")
    for p in summary["prompts"]:
        rules = p["rules"]
        pairwise = p["pairwise"]
        win = "–"
        if pairwise and pairwise["win_rate"] is not None:
            low, high = pairwise["win_interval"]
            win = f"{_percent(pairwise['win_rate'])} ({low * 100:.0f}–{high * 100:.0f})"
        latency = p["latency_ms"]
        table.add_row(
            p["name"],
            f"{_percent(rules['pass_rate'])} ({rules['passed']}/{rules['checked']})",
            "–" if p["judge"]["mean"] is None else f"{p['judge']['mean']:.2f}",
            win,
            str(p["tokens"]["total"]),
            "–" if p["cost"] is None else f"{p['cost']:.4f}",
            "–" if latency["p50"] is None else f"{latency['p50']:.0f} / {latency['p95']:.0f} ms",
            str(p["errors"] + p["judge"]["errors"]),
        )
    return table


def _thresholds(args: argparse.Namespace, summary: dict[str, Any]) -> int:
    candidate = summary["prompts"][-1]
    missed = []
    if args.min_pass_rate is not None:
        rate = candidate["rules"]["pass_rate"]
        if rate is None or rate < args.min_pass_rate:
            missed.append(f"rule pass rate {_percent(rate)} < {_percent(args.min_pass_rate)}")
    if args.min_win_rate is not None:
        rate = (candidate["pairwise"] or {}).get("win_rate")
        if rate is None or rate < args.min_win_rate:
            missed.append(f"win rate {_percent(rate)} < {_percent(args.min_win_rate)}")
    for line in missed:
        print(f"promptcast: {candidate['name']}: {line}", file=sys.stderr)
    return THRESHOLD_MISSED if missed else 0
