"""A run's plan: the prompts, the cases, the model and the judge, checked before anything starts.

`parse_plan` validates a POST /eval body (the CLI builds the same body), and
raises a 422 naming the field for anything the run could not do: over a
cap, an unknown model, a placeholder no case fills.

The cases come in the body (`cases`) or from a test set saved in the library
(`testset`, a name or an id): `testset_ref` says which, and the server finds
the saved set's cases for the caller before `parse_plan` checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptcast.errors import InvalidField, PromptcastError
from promptcast.evals.cases import Case, CaseError, parse_case, parse_vars, whole
from promptcast.evals.messages import placeholders
from promptcast.models import ModelTable
from promptcast.settings import Settings

MAX_PROMPTS = 10
MAX_NAME_CHARS = 100
# The built-in models, strongest first: the judge by default is the first usable one.
JUDGE_PREFERENCE = ("qwen-max", "gpt-4o-mini", "qwen-plus", "gpt-3.5-turbo", "qwen-turbo")
_KEYS = frozenset({"prompts", "cases", "testset", "model", "judge", "pairwise", "concurrency",
                   "vars", "opening", "deltas"})
# A saved test set's name (the library's limit) or id.
MAX_TESTSET_REF_CHARS = 200


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """The caps a plan is checked against (from the settings)."""

    max_cells: int
    max_case_chars: int
    max_prompt_chars: int
    max_opening_chars: int
    default_concurrency: int
    max_concurrency: int
    local_queue_size: int

    @classmethod
    def from_settings(cls, s: Settings) -> PlanLimits:
        return cls(max_cells=s.eval_max_cells, max_case_chars=s.eval_max_case_chars,
                   max_prompt_chars=s.max_prompt_chars, max_opening_chars=s.max_opening_chars,
                   default_concurrency=s.eval_concurrency, max_concurrency=s.eval_max_concurrency,
                   local_queue_size=s.local_queue_size)


@dataclass(frozen=True, slots=True)
class PromptUnderTest:
    name: str
    text: str
    opening: str | None = None


@dataclass(frozen=True, slots=True)
class SavedTestSet:
    """A test set from the library, found for the caller: what a run takes from it."""

    __test__ = False  # not a pytest test class, whatever its name

    id: str
    name: str
    cases: list[Any]


@dataclass(frozen=True, slots=True)
class EvalPlan:
    """Everything a run needs to know, validated."""

    prompts: tuple[PromptUnderTest, ...]
    cases: tuple[Case, ...]
    model: str
    judge: str | None
    pairwise: bool = False
    concurrency: int = 4
    deltas: bool = False
    vars: Mapping[str, str] = field(default_factory=dict)
    opening: str | None = None
    testset: SavedTestSet | None = None  # where the cases came from, when saved

    @property
    def cells(self) -> int:
        return len(self.prompts) * len(self.cases)

    def pairs(self) -> list[tuple[int, int]]:
        """The prompt pairs judged against each other (every pair, in order)."""
        if not self.pairwise:
            return []
        n = len(self.prompts)
        return [(a, b) for a in range(n) for b in range(a + 1, n)]

    def opening_for(self, prompt: PromptUnderTest, case: Case) -> str | None:
        """The opening line of a cell: the case's, else the prompt's, else the run's."""
        return case.opening or prompt.opening or self.opening

    def values_for(self, case: Case) -> dict[str, str]:
        """The variable values of a case: the run's, overridden by the case's."""
        return {**self.vars, **case.vars}


def default_judge(models: ModelTable, configured: str | None) -> str:
    """The judge when none is asked for: the configured one, else the strongest keyed model,
    else any keyed model, else the embedded one."""
    if configured is not None:
        return configured
    usable = [spec for spec in models if spec.available]
    for name in JUDGE_PREFERENCE:
        if any(spec.name == name for spec in usable):
            return name
    remote = [spec.name for spec in usable if spec.provider != "llama"]
    return remote[0] if remote else models.default


def _model(models: ModelTable, value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidField(f"`{field_name}` must be a model name", field=field_name)
    try:
        models.get(value)
    except PromptcastError as exc:
        exc.field = field_name
        raise
    return value


def _prompts(data: Any, limits: PlanLimits) -> tuple[PromptUnderTest, ...]:
    if not isinstance(data, list) or not data:
        raise InvalidField("`prompts` must be a non-empty list of {name, text}", field="prompts")
    if len(data) > MAX_PROMPTS:
        raise InvalidField(f"`prompts` has {len(data)} prompts; the limit is {MAX_PROMPTS}",
                           field="prompts")
    prompts, seen = [], set()
    for index, item in enumerate(data):
        where = f"prompts[{index}]"
        if not isinstance(item, dict):
            raise InvalidField(f"`{where}` must be an object with name and text", field=where)
        unknown = sorted(set(item) - {"name", "text", "opening"})
        if unknown:
            raise InvalidField(f"`{where}` has unknown key(s) {unknown}; a prompt has name, "
                               "text and opening", field=f"{where}.{unknown[0]}")
        name, text, opening = item.get("name"), item.get("text"), item.get("opening")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise InvalidField(f"`{where}.name` must be a non-empty string of at most "
                               f"{MAX_NAME_CHARS} characters", field=f"{where}.name")
        if name == "tie" or name in seen:
            raise InvalidField(f"`{where}.name` {name!r} is "
                               + ("reserved" if name == "tie" else "used twice")
                               + "; each prompt needs its own name", field=f"{where}.name")
        seen.add(name)
        if not isinstance(text, str) or not text.strip():
            raise InvalidField(f"`{where}.text` must be the prompt's text", field=f"{where}.text")
        if len(text) > limits.max_prompt_chars:
            raise InvalidField(f"`{where}.text` is {len(text)} characters; the limit is "
                               f"{limits.max_prompt_chars}", field=f"{where}.text")
        prompts.append(PromptUnderTest(name, text, _opening(opening, f"{where}.opening",
                                                            limits)))
    return tuple(prompts)


def _opening(value: Any, where: str, limits: PlanLimits) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limits.max_opening_chars:
        raise InvalidField(f"`{where}` must be a string of at most {limits.max_opening_chars} "
                           "characters", field=where)
    return value


def testset_ref(data: Mapping[str, Any]) -> str | None:
    """The saved test set a body names (`testset`), or None when it gives its `cases`.

    Exactly one of the two: both, or neither, is a 422 naming the field.
    """
    if "testset" not in data:
        return None
    if "cases" in data:
        raise InvalidField("give the cases (`cases`) or a saved test set (`testset`), not both",
                           field="testset")
    value = data["testset"]
    if (not isinstance(value, str) or not value.strip()
            or len(value) > MAX_TESTSET_REF_CHARS):
        raise InvalidField(f"`testset` must be a saved test set's name or id (1 to "
                           f"{MAX_TESTSET_REF_CHARS} characters)", field="testset")
    return value.strip()


def _cases(data: Any, limits: PlanLimits, prompts: int,
           saved: SavedTestSet | None = None) -> tuple[Case, ...]:
    # A saved set's cases were stored as JSON objects, unchecked: their errors name `testset`.
    field_name = "cases" if saved is None else "testset"
    if not isinstance(data, list) or not data:
        raise InvalidField("`cases` must be a non-empty list of cases (or `testset`: a saved "
                           "test set's name or id)" if saved is None
                           else f"the test set {saved.name!r} has no case", field=field_name)
    if prompts * len(data) > limits.max_cells:
        raise InvalidField(
            f"{prompts} prompts x {len(data)} cases is {prompts * len(data)} cells; a run "
            f"may have at most {limits.max_cells}", field=field_name)
    cases = []
    for index, item in enumerate(data):
        try:
            cases.append(parse_case(item, max_chars=limits.max_case_chars))
        except CaseError as exc:
            if saved is not None:
                key = f" (`{exc.key}`)" if exc.key else ""
                raise InvalidField(f"the test set {saved.name!r}, case {index}{key}: "
                                   f"{exc.message}", field=field_name) from None
            where = f"cases[{index}]" + (f".{exc.key}" if exc.key else "")
            raise InvalidField(f"`cases[{index}]`: {exc.message}", field=where) from None
    return tuple(cases)


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidField(f"`{name}` must be true or false", field=name)
    return value


def parse_plan(data: Mapping[str, Any], *, models: ModelTable, limits: PlanLimits,
               default_judge_model: str | None = None,
               saved: SavedTestSet | None = None) -> EvalPlan:
    """Validate a run's body; every error is a 422 (or 404 for an unknown model) naming the field.

    `judge`: a model name; absent or null for the default judge; false for no judge.
    `saved`: the test set the body's `testset` names, found by the caller (the server).
    """
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidField(f"unknown field(s) {unknown}; a run takes {', '.join(sorted(_KEYS))}",
                           field=unknown[0])
    if testset_ref(data) is None:
        saved = None
    elif saved is None:
        # Only a server has the library that a `testset` is found in.
        raise InvalidField("`testset` names a test set saved on a promptcast server: run it "
                           "there (POST /eval, promptcast eval --server), or give `cases`",
                           field="testset")
    prompts = _prompts(data.get("prompts"), limits)
    cases = _cases(data.get("cases") if saved is None else saved.cases, limits, len(prompts),
                   saved)
    model = _model(models, data.get("model") or models.default, "model")
    raw_judge = data.get("judge")
    if raw_judge is False:
        judge = None
    elif raw_judge is None:
        judge = _model(models, default_judge(models, default_judge_model), "judge")
    else:
        judge = _model(models, raw_judge, "judge")
    pairwise = _flag(data, "pairwise")
    if pairwise and len(prompts) < 2:
        raise InvalidField("`pairwise` compares prompts: give 2 or more", field="pairwise")
    if pairwise and judge is None:
        raise InvalidField("`pairwise` needs a judge; drop `\"judge\": false`", field="pairwise")
    pair_count = len(prompts) * (len(prompts) - 1) // 2 if pairwise else 0
    if pair_count * len(cases) > limits.max_cells:
        raise InvalidField(
            f"{pair_count} prompt pairs x {len(cases)} cases is {pair_count * len(cases)} "
            f"comparisons; a run may have at most {limits.max_cells}", field="pairwise")
    concurrency = whole(data.get("concurrency", limits.default_concurrency))
    if (isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= limits.max_concurrency):
        raise InvalidField(f"`concurrency` must be a whole number from 1 to "
                           f"{limits.max_concurrency}", field="concurrency")
    if any(models.get_spec(name).provider == "llama" for name in (model, judge) if name):
        # The embedded model answers one at a time behind a queue: more would be refused.
        concurrency = min(concurrency, limits.local_queue_size)
    try:
        run_vars = parse_vars(data.get("vars") or {})
    except CaseError as exc:
        raise InvalidField(exc.message, field=exc.key) from None
    plan = EvalPlan(
        prompts=prompts, cases=cases, model=model, judge=judge, pairwise=pairwise,
        concurrency=concurrency, deltas=_flag(data, "deltas"), vars=run_vars,
        opening=_opening(data.get("opening"), "opening", limits), testset=saved,
    )
    _check_fillable(plan)
    return plan


def _check_fillable(plan: EvalPlan) -> None:
    """Every placeholder of every cell has a value: an unfilled one is an error, not a guess."""
    for prompt in plan.prompts:
        for index, case in enumerate(plan.cases):
            opening = plan.opening_for(prompt, case) or ""
            missing = [name for name in placeholders(prompt.text + "\n" + opening)
                       if name not in plan.vars and name not in case.vars]
            if missing:
                names = ", ".join("{{" + name + "}}" for name in missing)
                raise InvalidField(
                    f"prompt {prompt.name!r} has placeholder(s) {names} that case {index} "
                    "gives no value for: add them to the case's `vars` or the run's `vars`",
                    field="testset" if plan.testset else f"cases[{index}].vars")
