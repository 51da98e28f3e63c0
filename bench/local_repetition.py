"""How often the embedded model loops, with and without its repetition controls.

    python -m bench.local_repetition [--seeds 3] [--max-tokens 512]

Runs SmolLM2-135M (the `local` model) on a handful of zh and en prompts, each
with a few sampling seeds, and reports per configuration: how many runs
repeated a line 3 times or more, the worst repeat count, how many echoed the
<prompt> tags, how many reached the length cap, and the mean length. The
figures are recorded in docs/local-model.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from promptcast.providers.llama import SAMPLING, default_model_path
from promptcast.providers.repetition import LoopGuard
from promptcast.service.prompts import Mode, build_messages, echo_stops

SEED_PROMPT = ("你是一个电商平台的客服助手，负责回答用户关于订单、物流和退换货的问题。"
               "回答要简洁、礼貌，不知道的问题要转人工客服。")
SEED_OPENING = "您好，欢迎光临！请问有什么可以帮您？"
CASES: list[tuple[str, Mode, str | None]] = [
    (SEED_PROMPT, Mode.OPTIMIZE, SEED_OPENING),
    (SEED_PROMPT, Mode.EXPAND, SEED_OPENING),
    ("你是一名旅行助手，帮助用户规划行程，推荐景点和美食。", Mode.OPTIMIZE, None),
    ("You are a customer-service assistant for an online shop. Answer questions about "
     "orders, refunds and delivery.", Mode.OPTIMIZE, "Hi! How can I help you today?"),
    ("You are a customer-service assistant for an online shop. Answer questions about "
     "orders, refunds and delivery.", Mode.EXPAND, None),
    ("You are a helpful writing tutor. Correct the student's grammar and explain briefly.",
     Mode.SHORTEN, None),
]

CONFIGS: dict[str, dict[str, Any]] = {
    # The provider's sampling before the loop guard: no penalty at all.
    "no penalties, no guard": {"temperature": 0.7, "top_p": 0.95},
    "penalties": {**SAMPLING},
    "penalties + guard": {**SAMPLING, "guard": True},
    "penalties + guard + tag stops": {**SAMPLING, "guard": True, "stops": True},
}


@dataclass
class Run:
    text: str
    tokens: int
    finish: str
    seconds: float

    def worst_repeat(self) -> int:
        lines = [re.sub(r"\s+", " ", line).strip() for line in self.text.splitlines()]
        counts = collections.Counter(line for line in lines if len(line) >= 8)
        return max(counts.values(), default=1)


def generate(model: Any, case: tuple[str, Mode, str | None], seed: int, max_tokens: int,
             config: dict[str, Any]) -> Run:
    prompt, mode, opening = case
    messages = [m.as_dict() for m in build_messages(prompt, mode, opening=opening)]
    options = {k: v for k, v in config.items() if k not in ("guard", "stops")}
    if config.get("stops"):
        options["stop"] = list(echo_stops(prompt, opening=opening))
    guard = LoopGuard() if config.get("guard") else None
    started = time.perf_counter()
    parts: list[str] = []
    tokens, finish = 0, "length"
    for piece in model.create_chat_completion(messages=messages, stream=True, seed=seed,
                                              max_tokens=max_tokens, **options):
        choice = piece["choices"][0]
        text = choice["delta"].get("content") or ""
        if text:
            tokens += 1
            passed = guard.feed(text) if guard else text
            if passed is None:
                finish = "repetition"
                break
            parts.append(passed)
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
            if guard:
                parts.append(guard.flush())
    return Run("".join(parts), tokens, finish, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print every run as JSON too")
    args = parser.parse_args()

    from llama_cpp import Llama

    model = Llama(model_path=str(default_model_path()), n_ctx=8192, verbose=False)
    print(f"{'configuration':<30} {'runs':>4} {'looped':>6} {'worst':>5} {'tags':>4} "
          f"{'capped':>6} {'stopped':>7} {'chars':>6}")
    for name, config in CONFIGS.items():
        runs = [generate(model, case, seed, args.max_tokens, config)
                for case in CASES for seed in range(1, args.seeds + 1)]
        looped = sum(run.worst_repeat() >= 3 for run in runs)
        worst = max(run.worst_repeat() for run in runs)
        tags = sum(bool(re.search(r"</?(?:prompt|opening)", run.text)) for run in runs)
        capped = sum(run.finish == "length" for run in runs)
        stopped = sum(run.finish == "repetition" for run in runs)
        chars = sum(len(run.text) for run in runs) / len(runs)
        print(f"{name:<30} {len(runs):>4} {looped:>6} {worst:>5} {tags:>4} {capped:>6} "
              f"{stopped:>7} {chars:>6.0f}", flush=True)
        if args.json:
            for run in runs:
                print(json.dumps({"config": name, "finish": run.finish, "text": run.text},
                                 ensure_ascii=False))


if __name__ == "__main__":
    main()
