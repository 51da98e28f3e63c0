"""An evaluation run's records: its result kept as an evaluation, and a run record of kind "eval".

    POST /eval ── EvalRecording(plan) ── observe(kind, payload): each `cell` and
        │                                `judgement` kept as it goes out (texts cut
        │                                to bounds), then the `summary`
    streaming.serve ── records.capture() ── recording.capture(library, owner, stream id)
    the stream's end ── capture.finish(stats):
        the run record queued for the recorder (outcome, usage, timings; never awaited)
        a run that reached its summary kept as an evaluation whose id is the stream's
        (`Library.keep_evaluation`: a task of its own, never awaited by the stream)

Nothing here touches the database on the run's path: the run's events are
copied (bounded) as they are emitted, and both writes start after its end.
"""

from __future__ import annotations

from typing import Any

from promptcast.evals.plan import EvalPlan
from promptcast.storage.fields import NAME_CHARS, RUN_TEXT_CHARS
from promptcast.storage.library import Library
from promptcast.storage.recorder import Stats, error_message
from promptcast.storage.runs import RunRecord
from promptcast.storage.tables import now_us
from promptcast.storage.testsets import EvaluationFields

# What an evaluation keeps of each answer's text, and of a judge's reason or raw reply:
# a kept run is bounded whatever its models wrote (a cut text says `"truncated": true`).
TEXT_CHARS = 2_000
NOTE_CHARS = 500
# The end of the stream a capture keeps: enough for its terminal frame's message.
_TAIL_BYTES = 8_192


def _cut(value: Any, limit: int) -> tuple[Any, bool]:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit], True
    return value, False


def bounded(payload: dict[str, Any]) -> dict[str, Any]:
    """A `cell` or `judgement` payload as an evaluation keeps it: long texts cut."""
    out = dict(payload)
    cut = False
    for key, limit in (("text", TEXT_CHARS), ("reason", NOTE_CHARS), ("raw", NOTE_CHARS)):
        if key in out:
            out[key], was_cut = _cut(out[key], limit)
            cut = cut or was_cut
    orders = out.get("orders")
    if isinstance(orders, list):
        out["orders"] = [dict(o, reason=_cut(o["reason"], NOTE_CHARS)[0])
                         if isinstance(o, dict) and "reason" in o else o for o in orders]
    if cut:
        out["truncated"] = True
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def evaluation_name(plan: EvalPlan) -> str:
    """What a kept evaluation is called: its saved test set's name, else its prompts'."""
    if plan.testset is not None:
        name = plan.testset.name
    else:
        name = " vs ".join(_one_line(p.name) for p in plan.prompts)
    name = _one_line(name) or "evaluation"
    return name[:NAME_CHARS]


def summary_text(summary: dict[str, Any] | None) -> str:
    """A run record's text: one line per prompt, its headline figures."""
    if summary is None:
        return ""
    lines = []
    for p in summary.get("prompts", []):
        parts = []
        rules = p.get("rules") or {}
        if rules.get("checked"):
            parts.append(f"rules {rules.get('passed')}/{rules.get('checked')}")
        judge = p.get("judge") or {}
        if judge.get("mean") is not None:
            parts.append(f"judge {judge['mean']}")
        pairwise = p.get("pairwise") or {}
        if pairwise.get("win_rate") is not None:
            parts.append(f"win rate {pairwise['win_rate']}")
        parts.append(f"errors {p.get('errors', 0)}")
        lines.append(f"{p.get('name')}: " + ", ".join(parts))
    return "\n".join(lines)[:RUN_TEXT_CHARS]


def _tokens(summary: dict[str, Any] | None) -> tuple[int, int]:
    """Every answer's and judgement's tokens, as the summary counted them."""
    if summary is None:
        return 0, 0
    counts = [p.get("tokens") or {} for p in summary.get("prompts", [])]
    judge = (summary.get("judge_usage") or {}).get("tokens") or {}
    counts.append(judge)
    return (sum(int(c.get("prompt") or 0) for c in counts),
            sum(int(c.get("completion") or 0) for c in counts))


class EvalRecording:
    """One run's outcomes as they go out (`observe`), for its records once it ends."""

    def __init__(self, plan: EvalPlan) -> None:
        self.plan = plan
        self.entries: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None

    def observe(self, kind: str, payload: dict[str, Any]) -> None:
        """`EvalRun`'s observer: keep a `cell` or `judgement` (bounded), or the `summary`."""
        if kind == "summary":
            self.summary = payload
        elif kind in ("cell", "judgement"):
            self.entries.append({"event": kind, **bounded(payload)})

    def request(self) -> dict[str, Any]:
        """The run's request as its run record keeps it: the prompts, not the cases."""
        plan = self.plan
        out: dict[str, Any] = {
            "prompts": [{"name": p.name, "text": p.text} for p in plan.prompts],
            "model": plan.model, "judge": plan.judge, "pairwise": plan.pairwise,
            "concurrency": plan.concurrency, "cases": len(plan.cases)}
        if plan.testset is not None:
            out["testset"] = plan.testset.id
        return out

    def evaluation(self) -> EvaluationFields:
        """The evaluation to keep: the summary, and every cell and judgement as streamed."""
        plan = self.plan
        return EvaluationFields(
            name=evaluation_name(plan),
            testset=plan.testset.id if plan.testset is not None else None,
            model=plan.model, judge=plan.judge, summary=self.summary or {},
            cells=self.entries)

    def capture(self, library: Library, owner: str, run_id: str) -> EvalCapture:
        """The stream's capture, once the stream has its id (the records' id)."""
        return EvalCapture(self, library, owner, run_id)


class EvalCapture:
    """The relay's tap and the stream's end for an evaluation run (`records.Capture`)."""

    __slots__ = ("_library", "_owner", "_recording", "_tail", "created_at", "run_id")

    def __init__(self, recording: EvalRecording, library: Library, owner: str,
                 run_id: str) -> None:
        self._recording = recording
        self._library = library
        self._owner = owner
        self.run_id = run_id
        self.created_at = now_us()
        self._tail = b""

    def write(self, frames: bytes) -> None:
        """The relay's tap: only the latest write is held (the run's events are observed)."""
        self._tail = frames

    def finish(self, stats: Stats) -> None:
        """The stream ended: queue its run record; keep its evaluation if it has a summary."""
        recording = self._recording
        library = self._library
        if library.recorder is not None:
            library.recorder.record(self._record(stats))
        if recording.summary is not None:
            library.keep_evaluation(self._owner, recording.evaluation(), self.run_id)

    def _record(self, stats: Stats) -> RunRecord:
        recording = self._recording
        plan = recording.plan
        prompt_tokens, completion_tokens = _tokens(recording.summary)
        return RunRecord(
            id=self.run_id, owner=self._owner, kind="eval", model=plan.model, mode=None,
            request=recording.request(),
            input="\n\n".join(p.text for p in plan.prompts)[:RUN_TEXT_CHARS],
            outcome=str(stats.outcome), error_code=stats.error_code,
            error_message=error_message(self._tail[-_TAIL_BYTES:]) if stats.error_code else None,
            text=summary_text(recording.summary), prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, chunks=stats.chunks,
            ttft_ms=None if stats.first_event_after is None
            else round(stats.first_event_after * 1000, 1),
            duration_ms=round(stats.duration * 1000, 1), created_at=self.created_at)
