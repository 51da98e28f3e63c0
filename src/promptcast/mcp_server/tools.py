"""The tools: their schemas, and their arguments checked as the HTTP API checks its bodies.

A bad argument is an `InvalidField` naming the argument, with the message the
HTTP API gives for the same mistake; it reaches the client as a tool error.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import mcp_types as types

from promptcast.errors import InvalidField
from promptcast.evals.plan import MAX_PROMPTS, EvalPlan, PlanLimits, parse_plan
from promptcast.evals.testset import SCHEMA_PATH
from promptcast.models import ModelTable
from promptcast.providers.base import ChatRequest, Message
from promptcast.service.prompts import MODE_ALIASES
from promptcast.service.schemas import OptimizeRequest, parse_optimize
from promptcast.service.variables import fill, filled, try_messages
from promptcast.settings import Settings

OPTIMIZE = "optimize_prompt"
TRY = "try_prompt"
EVALUATE = "evaluate_prompts"

_MODES = list(MODE_ALIASES)
_OPTIONAL_TEXTS = ("opening", "target_chars", "previous", "feedback", "template")


def _model_schema(models: ModelTable) -> dict[str, Any]:
    usable = ", ".join(models.usable_names()) or "none"
    return {"type": "string",
            "description": f"The model to run on: one of {usable}. Default: {models.default}."}


def tools(settings: Settings) -> list[types.Tool]:
    """The tools this server offers, with this server's models and limits in their schemas."""
    models = settings.models
    text = {"type": "string", "minLength": 1}
    return [
        types.Tool(
            name=OPTIMIZE,
            title="Rewrite a prompt",
            description=(
                "Rewrite a prompt (often a customer-service bot's system prompt) with promptcast's "
                "meta-prompts: optimize it, expand it or shorten it, in the prompt's own language, "
                "keeping its placeholders and an optional opening line verbatim; or, given an "
                "earlier rewrite (`previous`) and `feedback`, revise that rewrite. Returns the "
                "rewritten prompt; progress notifications carry it as it streams."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "prompt": {**text, "maxLength": settings.max_prompt_chars,
                               "description": "The prompt to rewrite."},
                    "mode": {"type": "string", "enum": _MODES, "default": "optimize",
                             "description": "optimize (优化), expand (扩写) or shorten (缩写)."},
                    "model": _model_schema(models),
                    "opening": {"type": "string", "maxLength": settings.max_opening_chars,
                                "description": "The bot's first line (开场白): the rewrite "
                                               "keeps it verbatim."},
                    "target_chars": {"type": "integer", "minimum": 1, "maximum": 100000,
                                     "description": "With expand or shorten: the length to "
                                                    "aim for, in characters."},
                    "previous": {"type": "string", "maxLength": settings.max_prompt_chars,
                                 "description": "An earlier rewrite of `prompt` to revise "
                                                "(with `feedback`)."},
                    "template": {"type": "string",
                                 "description": "A template's name (the built-ins, or your own "
                                                "from the library) to rewrite with instead of "
                                                "the built-in meta-prompt."},
                    "feedback": {"type": "string", "maxLength": settings.max_opening_chars,
                                 "description": "What to change in `previous`, e.g. 更简洁 or "
                                                "\"add a section on refunds\" (with "
                                                "`previous`)."},
                },
                "required": ["prompt"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"text": {"type": "string"}, "mode": {"type": "string"},
                               "model": {"type": "string"}},
                "required": ["text", "mode", "model"],
            },
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=True),
        ),
        types.Tool(
            name=TRY,
            title="Try a prompt on a customer message",
            description=(
                "Run a system prompt as the bot and return its answer to one customer message, "
                "so a prompt (or its rewrite) can be judged by what the bot says. "
                "{{name}} placeholders in the prompt are filled from `variables`; an opening "
                "line goes first in the conversation, as the bot's."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "prompt": {**text, "maxLength": settings.max_prompt_chars,
                               "description": "The bot's system prompt."},
                    "message": {**text, "maxLength": settings.max_prompt_chars,
                                "description": "The customer's message for the bot to answer."},
                    "model": _model_schema(models),
                    "variables": {"type": "object", "additionalProperties": {"type": "string"},
                                  "description": "A value for each {{name}} placeholder of "
                                                 "the prompt."},
                    "opening": {"type": "string", "maxLength": settings.max_opening_chars,
                                "description": "The bot's first line, sent before the "
                                               "customer's message."},
                },
                "required": ["prompt", "message"],
                "additionalProperties": False,
            },
            output_schema={
                "type": "object",
                "properties": {"text": {"type": "string"}, "model": {"type": "string"}},
                "required": ["text", "model"],
            },
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=True),
        ),
        types.Tool(
            name=EVALUATE,
            title="Evaluate prompts on test cases",
            description=(
                "Answer every test case with every prompt (as the bot's system prompt), check "
                "each answer against the case's expectations (contains, not_contains, regex, "
                "max_chars, language, starts_with_opening), have a judge model score it "
                "against the case's rubric, and with `pairwise` compare the prompts two by "
                "two. Returns the summary per prompt: rule pass rate, mean score, win rate "
                "with its 95% interval, tokens, cost and latency. Progress notifications "
                "come as each answer and judgement finishes. Give `cases`, or a saved test "
                "set's name as `test_set`."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "prompts": {
                        "type": "array", "minItems": 1, "maxItems": MAX_PROMPTS,
                        "description": "The prompts to compare: texts (named v1, v2, ... in "
                                       "order) or {name, text, opening?}.",
                        "items": {"anyOf": [
                            {"type": "string", "minLength": 1},
                            {"type": "object", "required": ["name", "text"],
                             "properties": {"name": {"type": "string"},
                                            "text": {"type": "string"},
                                            "opening": {"type": "string"}},
                             "additionalProperties": False},
                        ]},
                    },
                    "cases": {"type": "array", "minItems": 1, "items": _case_schema(),
                              "description": "The test cases; the smallest is "
                                             "{\"message\": \"...\"}."},
                    "test_set": {"type": "string",
                                 "description": "Instead of `cases`: a saved test set's id or "
                                                "name (the library's)."},
                    "model": _model_schema(models),
                    "judge": {"type": ["string", "boolean"],
                              "description": "The judge model's name, or false for no judge. "
                                             "Default: the strongest keyed model."},
                    "pairwise": {"type": "boolean", "default": False,
                                 "description": "Also judge the prompts two by two, in both "
                                                "orders (2 or more prompts)."},
                    "vars": {"type": "object", "additionalProperties": {"type": "string"},
                             "description": "Values for the prompts' {{name}} placeholders, "
                                            "for every case (a case's own `vars` win)."},
                },
                "required": ["prompts"],
                "additionalProperties": False,
            },
            output_schema={"type": "object",
                           "properties": {"prompts": {"type": "array"},
                                          "model": {"type": "string"}},
                           "required": ["prompts", "model"]},
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=True),
        ),
    ]


@functools.cache
def _case_schema() -> dict[str, Any]:
    """A test case's JSON Schema: the one shipped with the test-set format, its refs inlined."""
    shipped = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    definitions = shipped["$defs"]

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    case: dict[str, Any] = inline(definitions["case"])
    return case


def _known(arguments: dict[str, Any], tool: types.Tool) -> None:
    allowed = tool.input_schema["properties"]
    for name in arguments:
        if name not in allowed:
            raise InvalidField(
                f"`{name}` is not an argument of {tool.name}; its arguments are "
                f"{', '.join(allowed)}", field=name)


def _text(arguments: dict[str, Any], name: str, limit: int) -> str:
    value = arguments.get(name)
    if value is None:
        raise InvalidField(f"`{name}` is required", field=name)
    if not isinstance(value, str):
        raise InvalidField(f"`{name}` must be a string", field=name)
    if not value.strip():
        raise InvalidField(f"`{name}` is empty", field=name)
    if len(value) > limit:
        raise InvalidField(f"`{name}` is {len(value)} characters; the limit is {limit}",
                           field=name)
    return value


def _model(arguments: dict[str, Any], models: ModelTable) -> str:
    model = arguments.get("model")
    if model is None or model == "":
        return models.default
    if not isinstance(model, str):
        raise InvalidField("`model` must be a string", field="model")
    return model


def optimize_request(arguments: dict[str, Any], settings: Settings,
                     tool: types.Tool) -> OptimizeRequest:
    """`optimize_prompt`'s arguments as an /optimize-stream body, checked the same way."""
    _known(arguments, tool)
    mode = arguments.get("mode", "optimize")
    if not isinstance(mode, str) or mode not in MODE_ALIASES:
        raise InvalidField(
            f"`mode` must be one of {', '.join(repr(m) for m in _MODES)}, not {mode!r}",
            field="mode")
    body = {"prompt": arguments.get("prompt"), "type": mode,
            "model": _model(arguments, settings.models)}
    for name in _OPTIONAL_TEXTS:
        if name in arguments:
            body[name] = arguments[name]
    return parse_optimize(body, default_model=settings.models.default,
                          max_prompt_chars=settings.max_prompt_chars,
                          max_opening_chars=settings.max_opening_chars)


def try_request(arguments: dict[str, Any], settings: Settings, tool: types.Tool,
                request_id: str) -> ChatRequest:
    """`try_prompt`'s arguments as the chat the bot would have, as the page's and the CLI's
    tries send it: the prompt (filled) as the system message, the opening line as the bot's
    first turn if there is one, the customer's message as the user's."""
    _known(arguments, tool)
    prompt = _text(arguments, "prompt", settings.max_prompt_chars)
    message = _text(arguments, "message", settings.max_prompt_chars)
    opening = arguments.get("opening")
    if opening is not None and (not isinstance(opening, str)
                                or len(opening) > settings.max_opening_chars):
        raise InvalidField(f"`opening` must be a string of at most {settings.max_opening_chars} "
                           "characters", field="opening")
    variables = arguments.get("variables") or {}
    if not isinstance(variables, dict) or not all(
            isinstance(value, str) for value in variables.values()):
        raise InvalidField("`variables` must be an object of strings, by placeholder name",
                           field="variables")
    messages = try_messages(filled(prompt, variables, "variables"), (Message("user", message),),
                            fill(opening, variables) if opening else None)
    return ChatRequest(model=_model(arguments, settings.models), messages=messages,
                       request_id=request_id)


def evaluate_plan(arguments: dict[str, Any], settings: Settings, tool: types.Tool,
                  saved_cases: list[Any] | None = None) -> EvalPlan:
    """`evaluate_prompts`' arguments as a POST /eval body, checked by the same parser;
    `saved_cases`, a saved test set's, when `test_set` named one."""
    _known(arguments, tool)
    if saved_cases is not None and "cases" in arguments:
        raise InvalidField("give `cases` or `test_set`, not both", field="test_set")
    prompts = arguments.get("prompts")
    if isinstance(prompts, list):
        prompts = [{"name": f"v{index + 1}", "text": item} if isinstance(item, str) else item
                   for index, item in enumerate(prompts)]
    body = {"prompts": prompts,
            "cases": saved_cases if saved_cases is not None else arguments.get("cases")}
    for name in ("model", "judge", "pairwise", "vars"):
        if name in arguments:
            body[name] = arguments[name]
    return parse_plan(body, models=settings.models, limits=PlanLimits.from_settings(settings),
                      default_judge_model=settings.eval_judge)


def planned_events(plan: EvalPlan) -> int:
    """How many cells and judgements a run makes: its progress's total."""
    scores = plan.cells if plan.judge is not None else 0
    return plan.cells + scores + len(plan.pairs()) * len(plan.cases)
