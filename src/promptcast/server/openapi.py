"""The OpenAPI 3.1 document of the HTTP API, served at /openapi.json and fuzzed by the tests."""

from __future__ import annotations

import json
from typing import Any, Final

from promptcast import __version__
from promptcast.evals.plan import MAX_NAME_CHARS, MAX_PROMPTS, MAX_TESTSET_REF_CHARS
from promptcast.evals.testset import SCHEMA_PATH
from promptcast.server import openapi_library
from promptcast.service.schemas import MAX_TOKENS_LIMIT

_ERROR = {"$ref": "#/components/schemas/Error"}
# The test-set format's own schema (shipped with the package): one case of it is a TestCase.
TESTSET_SCHEMA: Final[dict[str, Any]] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON or a bad header", 401: "Missing API key", 403: "Wrong API key",
        404: "Unknown model or stream", 413: "Body too large", 415: "Body is not JSON",
        422: "A field is invalid; `field` names it", 429: "Rate limited (see Retry-After)",
        499: "The client left before the answer", 502: "The upstream failed",
        503: "Overloaded, or the streams store is down", 504: "The upstream did not answer",
    }
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


_SSE: dict[str, Any] = {
    "description": "An event stream: `id: <stream>.<n>` + `data: <chat.completion.chunk>` "
                   "events, `: keep-alive` comments, and one terminal frame: `data: [DONE]`, "
                   "`event: timeout` or `event: error`.",
    "headers": {"X-Stream-Id": {"schema": {"type": "string"}},
                "X-Request-ID": {"schema": {"type": "string"}}},
    # The schema of one event, as SSE-aware tools such as schemathesis read it.
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {
            "data": {"type": "string", "description": "chunk JSON, [DONE], or {code, message}"},
            "event": {"enum": ["message", "error", "timeout"]},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[0-9]+$|^$"},
        },
    }}},
}
_STREAM_ERRORS = (400, 401, 403, 404, 413, 415, 422, 429, 499, 502, 503, 504)


def _body(schema: str) -> dict[str, Any]:
    return {"required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

_STREAM_ID = {"name": "stream_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "field": {"type": "string"}},
        }},
    },
    "ChatRequest": {
        "type": "object", "required": ["messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string",
                             "enum": ["system", "user", "assistant", "developer", "tool"]},
                    "content": {"type": "string"},
                },
            }},
            "stream": {"type": "boolean"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            # Read only with an optimizer's name (`promptcast-optimize/<model>`, ...).
            "opening": {"type": ["string", "null"],
                        "description": "With promptcast-<mode>/<model>: the bot's first line"},
            "target_chars": {"type": "integer", "minimum": 1, "maximum": 100000,
                             "description": "With promptcast-expand/ or -shorten/<model>: "
                                            "the length to aim for"},
            "metadata": {
                "type": "object", "additionalProperties": {"type": "string"},
                "properties": {"promptcast_kind": {"enum": ["chat", "try"]}},
                "description": "String tags; `promptcast_kind` is the library's run kind "
                               "(\"try\": a try column; default \"chat\")"},
        },
    },
    "ChatCompletion": {
        "type": "object", "required": ["id", "object", "choices"],
        "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion"},
                       "model": {"type": "string"}, "choices": {"type": "array"},
                       "usage": {"type": ["object", "null"]}},
    },
    "Models": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "available"],
            "properties": {"id": {"type": "string"}, "available": {"type": "boolean"},
                           "unavailable_reason": {"type": ["string", "null"]},
                           "default": {"type": "boolean"}},
        }}},
    },
}


# Some character that is not whitespace as the server counts it (Python's
# str.isspace, which strip() removes). JSON Schema patterns are ECMAScript
# regexes, whose \S would let U+0085 and U+001C-U+001F pass for text.
NOT_BLANK = ("[^\\t\\n\\v\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
             "\\u2028\\u2029\\u202f\\u205f\\u3000]")


def _optimize_schema(max_prompt: int, max_opening: int, *, gateway: bool) -> dict[str, Any]:
    resizing = ["expand", "shorten", "扩写", "缩写"]
    return {
        "type": "object", "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": max_prompt,
                       "pattern": NOT_BLANK, "description": "The prompt to rewrite"},
            "type": {"type": "string", "enum": ["optimize", "优化", *resizing]},
            "model": {"type": "string", "description": "Default: the server's default model"},
            "opening": {"type": ["string", "null"], "maxLength": max_opening,
                        "description": "The line the bot must say first, verbatim"},
            "target_chars": {"type": "integer", "minimum": 1, "maximum": 100000},
            "stream": {"const": True} if gateway else {"type": "boolean"},
            "resumable": {"type": "boolean"},
            "previous": {"type": "string", "minLength": 1, "maxLength": max_prompt,
                         "pattern": NOT_BLANK,
                         "description": "An earlier rewrite to revise (with `feedback`)"},
            "feedback": {"type": "string", "minLength": 1, "maxLength": max_opening,
                         "pattern": NOT_BLANK,
                         "description": "What to change in `previous` (with `previous`)"},
            "template": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$",
                         "description": "A template's name: a built-in or one of yours "
                                        "(GET /api/templates)"},
        },
        # A revision needs both the rewrite and what to change in it.
        "dependentRequired": {"previous": ["feedback"], "feedback": ["previous"]},
        # A target length only makes sense when the length is what changes.
        "if": {"required": ["target_chars"]},
        "then": {"required": ["type"], "properties": {"type": {"enum": resizing}}},
    }


def _eval_schema(max_prompt: int, max_opening: int, max_cells: int,
                 max_concurrency: int) -> dict[str, Any]:
    prompt = {"type": "object", "required": ["name", "text"], "additionalProperties": False,
              "properties": {
                  "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                           "pattern": NOT_BLANK, "not": {"const": "tie"}},
                  "text": {"type": "string", "minLength": 1, "maxLength": max_prompt,
                           "pattern": NOT_BLANK},
                  "opening": {"type": ["string", "null"], "maxLength": max_opening}}}
    return {
        "type": "object", "required": ["prompts"], "additionalProperties": False,
        # The cases, or a saved test set to take them from: exactly one.
        "oneOf": [{"required": ["cases"]}, {"required": ["testset"]}],
        "properties": {
            "prompts": {"type": "array", "minItems": 1, "maxItems": MAX_PROMPTS,
                        "uniqueItems": True, "items": prompt,
                        "description": "Names must differ from each other"},
            "cases": {"type": "array", "minItems": 1, "maxItems": max_cells,
                      "items": {"$ref": "#/components/schemas/TestCase"},
                      "description": f"At most {max_cells} prompts x cases in all"},
            "testset": {"type": "string", "minLength": 1,
                        "maxLength": MAX_TESTSET_REF_CHARS, "pattern": NOT_BLANK,
                        "description": "Instead of `cases`: a test set saved in the library "
                                       "(GET /api/testsets), by id or name, of the caller's "
                                       "own (else 404)"},
            "model": {"type": "string", "description": "Default: the server's default model"},
            "judge": {"type": ["string", "boolean", "null"],
                      "description": "A model; absent or null: the default judge; false: none"},
            "pairwise": {"type": "boolean"},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": max_concurrency},
            "vars": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            "opening": {"type": ["string", "null"], "maxLength": max_opening},
            "deltas": {"type": "boolean", "description": "Also stream `event: delta` pieces"},
        },
    }


_EVAL_SSE: dict[str, Any] = {
    "description": "An event stream: `event: cell`, `event: delta` (when asked), `event: "
                   "judgement`, one `event: summary`, then `data: [DONE]`; or a terminal "
                   "`event: error` / `event: timeout`. docs/eval.md describes each payload.",
    "headers": _SSE["headers"],
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {
            "data": {"type": "string", "description": "one JSON object, or [DONE]"},
            "event": {"enum": ["cell", "delta", "judgement", "summary", "message", "error",
                               "timeout"]},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[0-9]+$|^$"},
        },
    }}},
}


def document(*, max_prompt_chars: int, max_opening_chars: int, max_eval_cells: int = 500,
             max_eval_concurrency: int = 32) -> dict[str, Any]:
    """The OpenAPI document, with this server's limits."""
    testcase = dict(TESTSET_SCHEMA["$defs"]["case"])
    testcase["properties"] = {**testcase["properties"],
                              "vars": TESTSET_SCHEMA["$defs"]["vars"]}
    schemas = {
        **SCHEMAS,
        "TestCase": testcase,
        "EvalRequest": _eval_schema(max_prompt_chars, max_opening_chars, max_eval_cells,
                                    max_eval_concurrency),
        **openapi_library.SCHEMAS,
        "OptimizeStream": _optimize_schema(max_prompt_chars, max_opening_chars, gateway=True),
        "Optimize": _optimize_schema(max_prompt_chars, max_opening_chars, gateway=False),
    }
    optimize = {
        "requestBody": _body("OptimizeStream"),
        "responses": {"200": _SSE, **_errors(*_STREAM_ERRORS)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "promptcast", "version": __version__,
                 "description": "Stream an LLM's rewrite of a prompt as Server-Sent Events."},
        "paths": {
            "/optimize-stream": {"post": {"summary": "Rewrite a prompt, streamed (the gateway)",
                                          "operationId": "optimizeStream", **optimize}},
            "/optimize-stream/{stream_id}": {
                "parameters": [_STREAM_ID],
                "get": {"summary": "Resume a resumable stream after Last-Event-ID",
                        "operationId": "resumeStream",
                        "parameters": [
                            {"name": "last_event_id", "in": "query",
                             "description": "For clients that cannot send Last-Event-ID",
                             "schema": {"type": "string",
                                        "pattern": "^[A-Za-z0-9_-]{1,64}\\.[0-9]{1,9}$"}},
                            {"name": "Last-Event-ID", "in": "header",
                             "schema": {"type": "string",
                                        "pattern": "^[A-Za-z0-9_-]{1,64}\\.[0-9]{1,9}$"}},
                        ],
                        "responses": {"200": _SSE, "204": {"description": "Already complete"},
                                      **_errors(401, 403, 404, 422, 429, 503)}},
                "delete": {"summary": "Stop a resumable stream's generation",
                           "operationId": "cancelStream",
                           "responses": {"202": _json({"type": "object"}, "Cancelling"),
                                         **_errors(401, 403, 404, 429, 503)}},
            },
            "/prompt/optimize-prompt": {"post": {
                "summary": "The model service: rewrite a prompt (stream, or one JSON answer)",
                "operationId": "optimizePrompt", "requestBody": _body("Optimize"),
                "responses": {
                    "200": {"description": "A stream, or a chat.completion when stream=false",
                            "content": {**_SSE["content"], "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatCompletion"}}}},
                    **_errors(*_STREAM_ERRORS),
                },
            }},
            "/v1/chat/completions": {"post": {
                "summary": "OpenAI-compatible chat completions", "operationId": "chat",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatRequest"}}}},
                "responses": {
                    "200": {"description": "A chat.completion, or a stream when stream=true",
                            "content": {**_SSE["content"], "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatCompletion"}}}},
                    **_errors(*_STREAM_ERRORS),
                },
            }},
            "/eval": {"post": {
                "summary": "Evaluate prompts on test cases: answers, rule checks, a judge, "
                           "pairwise verdicts, a summary (streamed)",
                "operationId": "eval", "requestBody": _body("EvalRequest"),
                "responses": {"200": _EVAL_SSE, **_errors(*_STREAM_ERRORS)},
            }},
            "/v1/models": {"get": {"summary": "Configured models and whether each is usable",
                                   "operationId": "models",
                                   "responses": {"200": _json({"$ref": "#/components/schemas/"
                                                               "Models"}, "The models"),
                                                 **_errors(401, 403, 429)}}},
            "/healthz": {"get": {"summary": "Alive", "operationId": "healthz",
                                 "responses": {"200": _json({"type": "object"}, "Alive")}}},
            "/readyz": {"get": {"summary": "Store and default model usable",
                                "operationId": "readyz",
                                "responses": {"200": _json({"type": "object"}, "Ready"),
                                              "503": _json({"type": "object"}, "Not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "Text format", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            **openapi_library.paths(),
        },
        "components": {"schemas": schemas},
    }
