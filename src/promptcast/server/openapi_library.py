"""The library's part of the OpenAPI document (issue 20): `/api/*` and `/s/{token}`."""

from __future__ import annotations

from typing import Any

from promptcast.storage import fields as f

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
_TEMPLATE_NAME = "^[A-Za-z0-9._-]{1,100}$"
_TEXT = {"description": "Every text is limited; the limits are in GET /api/library."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed JSON", 401: "Missing API key", 403: "Wrong API key",
            404: "No such object for this owner, or the library is off (`library_off`)",
            409: "A name already taken", 412: "If-Match is stale: GET the object again",
            413: "Body too large", 415: "Body is not JSON",
            422: "A field is invalid; `field` names it", 429: "Rate limited",
            503: "The database is unavailable"}
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_COMMON = (401, 403, 404, 429, 503)
_WRITE = (400, 401, 403, 404, 413, 415, 422, 429, 503)
_PATH_ID = {"name": "id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": _ID_PATTERN}}
_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
             "description": "The ETag of a GET; a stale one gets 412"}
_LIMIT = {"name": "limit", "in": "query", "description": f"1 to {f.MAX_LIST_LIMIT} "
          f"(default {f.LIST_LIMIT})",
          "schema": {"type": "integer", "minimum": 1, "maximum": f.MAX_LIST_LIMIT}}
_CURSOR = {"name": "cursor", "in": "query", "schema": {"type": "string"},
           "description": "`next_cursor` of the previous page"}
_Q = {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": f.QUERY_CHARS}}
_MODES = ["optimize", "expand", "shorten", "优化", "扩写", "缩写"]
_TAGS = {"type": "array", "maxItems": f.MAX_TAGS,
         "items": {"type": "string", "minLength": 1, "maxLength": f.TAG_CHARS}}
_NULLABLE_TEXT = {"type": ["string", "null"]}


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": _ref(item)},
                           "next_cursor": {"type": ["string", "null"]}}}


SCHEMAS: dict[str, Any] = {
    "PromptCreate": {
        "type": "object", "required": ["name", "text"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": f.NAME_CHARS},
            "text": {"type": "string", "minLength": 1, "maxLength": f.TEXT_CHARS},
            "mode": {"type": "string", "enum": _MODES},
            "model": {"type": ["string", "null"], "maxLength": f.MODEL_CHARS},
            "opening": {"type": ["string", "null"], "maxLength": f.OPENING_CHARS},
            "feedback": {"type": ["string", "null"], "maxLength": f.FEEDBACK_CHARS},
            "run": {"type": "string", "pattern": _ID_PATTERN},
            "tags": _TAGS,
        },
    },
    "PromptPatch": {
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": f.NAME_CHARS},
                       "tags": _TAGS, "current_version": {"type": "integer", "minimum": 1}},
    },
    "VersionCreate": {
        "type": "object", "required": ["text"],
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": f.TEXT_CHARS},
            "feedback": {"type": ["string", "null"], "maxLength": f.FEEDBACK_CHARS},
            "parent": {"type": "integer", "minimum": 1,
                       "description": "A version number (default: the latest)"},
            "mode": {"type": "string", "enum": _MODES},
            "model": {"type": ["string", "null"], "maxLength": f.MODEL_CHARS},
            "opening": {"type": ["string", "null"], "maxLength": f.OPENING_CHARS},
            "run": {"type": "string", "pattern": _ID_PATTERN,
                    "description": "The run (X-Stream-Id) that wrote this text"},
        },
    },
    "Version": {
        "type": "object", "required": ["number", "text", "mode", "created_at"],
        "properties": {"number": {"type": "integer"}, "text": {"type": "string"},
                       "mode": {"type": "string"}, "model": _NULLABLE_TEXT,
                       "opening": _NULLABLE_TEXT, "parent": {"type": ["integer", "null"]},
                       "feedback": _NULLABLE_TEXT, "run": _NULLABLE_TEXT,
                       "created_at": {"type": "string", "format": "date-time"}},
    },
    "Prompt": {
        "type": "object",
        "required": ["id", "name", "tags", "current_version", "versions", "etag"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}},
                       "current_version": {"type": "integer"}, "versions": {"type": "integer"},
                       "shared": {"type": "boolean"}, "etag": {"type": "string"},
                       "version": _ref("Version"), "preview": {"type": "string"},
                       "created_at": {"type": "string"}, "updated_at": {"type": "string"}},
    },
    "PromptPage": _page("Prompt"),
    "Versions": {"type": "object", "required": ["items"],
                 "properties": {"items": {"type": "array", "items": _ref("Version")}}},
    "Run": {
        "type": "object", "required": ["id", "kind", "model", "outcome", "text"],
        "properties": {"id": {"type": "string"}, "kind": {"type": "string"},
                       "model": {"type": "string"}, "mode": _NULLABLE_TEXT,
                       "template": _NULLABLE_TEXT, "request": {"type": "object"},
                       "outcome": {"enum": ["done", "timeout", "error", "cancelled"]},
                       "error": {"type": ["object", "null"]}, "text": {"type": "string"},
                       "truncated": {"type": "boolean"}, "usage": {"type": "object"},
                       "chunks": {"type": "integer"}, "ttft_ms": {"type": ["number", "null"]},
                       "duration_ms": {"type": "number"}, "created_at": {"type": "string"}},
    },
    "RunPage": _page("Run"),
    "Library": {"type": "object", "required": ["format", "version"],
                "description": "An export: prompts (with versions), templates, testsets, "
                               "evaluations, runs", "properties": {
                    "format": {"const": "promptcast-library"}, "version": {"const": 1},
                    "prompts": {"type": "array"}, "templates": {"type": "array"},
                    "testsets": {"type": "array"}, "evaluations": {"type": "array"},
                    "runs": {"type": "array"}}},
    "ImportResult": {"type": "object", "required": ["created", "skipped"],
                     "properties": {"created": {"type": "object"},
                                    "skipped": {"type": "object"}}},
    "TestSetCreate": {
        "type": "object", "required": ["name", "cases"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": f.NAME_CHARS},
                       "description": {"type": ["string", "null"]},
                       "cases": {"type": "array", "maxItems": f.MAX_CASES,
                                 "items": {"type": "object"}}},
    },
    "TestSetPatch": {
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": f.NAME_CHARS},
                       "description": {"type": ["string", "null"]},
                       "cases": {"type": "array", "maxItems": f.MAX_CASES,
                                 "items": {"type": "object"}}},
    },
    "TestSet": {"type": "object", "required": ["id", "name", "count"],
                "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                               "count": {"type": "integer"}, "cases": {"type": "array"},
                               "etag": {"type": "string"}}},
    "TestSetPage": _page("TestSet"),
    "EvaluationCreate": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": f.NAME_CHARS},
                       "testset": {"type": "string", "pattern": _ID_PATTERN},
                       "model": {"type": ["string", "null"], "maxLength": f.MODEL_CHARS},
                       "judge": {"type": ["string", "null"], "maxLength": f.MODEL_CHARS},
                       "summary": {"type": "object"}, "cells": {"type": "array"}},
    },
    "Evaluation": {"type": "object", "required": ["id", "name", "summary"],
                   "description": "A finished POST /eval run is kept as one (its id: the "
                                  "run's X-Stream-Id): its summary, and in `cells` each "
                                  "`cell` and `judgement` event as streamed (`event` names "
                                  "it; long texts cut, `truncated`)",
                   "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                  "summary": {"type": "object"}, "cells": {"type": "array"}}},
    "EvaluationPage": _page("Evaluation"),
    "TemplateCreate": {
        "type": "object", "required": ["name", "language", "text"],
        "properties": {"name": {"type": "string", "pattern": _TEMPLATE_NAME},
                       "language": {"type": "string", "pattern": "^[A-Za-z0-9-]{2,16}$"},
                       "mode": {"type": "string", "enum": _MODES},
                       "text": {"type": "string", "minLength": 1, "maxLength": f.TEXT_CHARS,
                                "description": "System message, a line `[user]`, the user "
                                               "message; needs {prompt}"}},
    },
    "TemplatePatch": {
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": _TEMPLATE_NAME},
                       "language": {"type": "string", "pattern": "^[A-Za-z0-9-]{2,16}$"},
                       "mode": {"type": "string", "enum": _MODES},
                       "text": {"type": "string", "minLength": 1, "maxLength": f.TEXT_CHARS}},
    },
    "Template": {"type": "object", "required": ["name", "language", "mode", "text", "builtin"],
                 "properties": {"name": {"type": "string"}, "language": {"type": "string"},
                                "mode": {"type": "string"}, "text": {"type": "string"},
                                "builtin": {"type": "boolean"}}},
    "Templates": {"type": "object", "required": ["items"],
                  "properties": {"items": {"type": "array", "items": _ref("Template")}}},
}


def _crud(name: str, create: str, item: str, page: str, patch: str | None,
          list_params: list[dict[str, Any]]) -> dict[str, Any]:
    one: dict[str, Any] = {
        "parameters": [_PATH_ID],
        "get": {"summary": f"One {name}", "operationId": f"get{item}",
                "responses": {"200": _json(_ref(item), f"The {name}"), **_errors(*_COMMON)}},
        "delete": {"summary": f"Delete a {name}", "operationId": f"delete{item}",
                   "responses": {"204": {"description": "Deleted"}, **_errors(*_COMMON)}},
    }
    if patch is not None:
        one["patch"] = {"summary": f"Change a {name}", "operationId": f"patch{item}",
                        "parameters": [_IF_MATCH], "requestBody": _body(patch),
                        "responses": {"200": _json(_ref(item), f"The changed {name}"),
                                      **_errors(*_WRITE, 412)}}
    return {
        "list": {
            "get": {"summary": f"List {name}s, newest first", "operationId": f"list{item}s",
                    "parameters": list_params,
                    "responses": {"200": _json(_ref(page), "One page"),
                                  **_errors(401, 403, 404, 422, 429, 503)}},
            "post": {"summary": f"Create a {name}", "operationId": f"create{item}",
                     "requestBody": _body(create),
                     "responses": {"201": _json(_ref(item), f"The new {name}"),
                                   **_errors(*_WRITE)}},
        },
        "one": one,
    }


def paths() -> dict[str, Any]:
    """The library's operations."""
    prompts = _crud("prompt", "PromptCreate", "Prompt", "PromptPage", "PromptPatch", [
        _Q, {"name": "tag", "in": "query", "schema": {"type": "string",
                                                       "maxLength": f.QUERY_CHARS}},
        _LIMIT, _CURSOR])
    prompts["one"]["delete"]["parameters"] = [_IF_MATCH]
    prompts["one"]["delete"]["responses"].update(_errors(412))
    testsets = _crud("test set", "TestSetCreate", "TestSet", "TestSetPage", "TestSetPatch",
                     [_LIMIT, _CURSOR])
    evaluations = _crud("evaluation", "EvaluationCreate", "Evaluation", "EvaluationPage", None, [
        {"name": "testset", "in": "query", "schema": {"type": "string",
                                                      "pattern": _ID_PATTERN}},
        _LIMIT, _CURSOR])
    return {
        "/api/library": {"get": {
            "summary": "Whether the library is on, whom the caller is, the limits",
            "operationId": "library",
            "responses": {"200": _json({"type": "object", "required": ["owner", "database"]},
                                       "The library"), **_errors(401, 403, 404, 429)}}},
        "/api/prompts": prompts["list"],
        "/api/prompts/{id}": prompts["one"],
        "/api/prompts/{id}/versions": {
            "parameters": [_PATH_ID],
            "get": {"summary": "A prompt's versions, in order", "operationId": "listVersions",
                    "responses": {"200": _json(_ref("Versions"), "The versions"),
                                  **_errors(*_COMMON)}},
            "post": {"summary": "Add the next version (it becomes the current one)",
                     "operationId": "addVersion", "requestBody": _body("VersionCreate"),
                     "responses": {"201": _json(_ref("Version"), "The new version"),
                                   **_errors(*_WRITE)}},
        },
        "/api/prompts/{id}/share": {
            "parameters": [_PATH_ID],
            "post": {"summary": "A read-only link (/s/<token>) that needs no key",
                     "operationId": "sharePrompt",
                     "responses": {"200": _json({"type": "object", "required": ["url"]},
                                                "The link"), **_errors(*_COMMON)}},
            "delete": {"summary": "Revoke the link", "operationId": "unsharePrompt",
                       "responses": {"204": {"description": "Revoked"}, **_errors(*_COMMON)}},
        },
        "/api/runs": {"get": {
            "summary": "Search runs (every stream), newest first", "operationId": "listRuns",
            "parameters": [{"name": "prompt", "in": "query",
                            "schema": {"type": "string", "pattern": _ID_PATTERN},
                            "description": "Runs that wrote one of this prompt's versions"},
                           _Q, {"name": "kind", "in": "query",
                                "schema": {"enum": ["optimize", "chat", "try", "eval"]}},
                           _LIMIT, _CURSOR],
            "responses": {"200": _json(_ref("RunPage"), "One page"),
                          **_errors(401, 403, 404, 422, 429, 503)}}},
        "/api/runs/{id}": {
            "parameters": [_PATH_ID],
            "get": {"summary": "One run (its id is the stream's X-Stream-Id)",
                    "operationId": "getRun",
                    "responses": {"200": _json(_ref("Run"), "The run"), **_errors(*_COMMON)}},
            "delete": {"summary": "Forget a run", "operationId": "deleteRun",
                       "responses": {"204": {"description": "Deleted"}, **_errors(*_COMMON)}},
        },
        "/api/export": {"get": {
            "summary": "Everything the caller owns, as one document", "operationId": "export",
            "parameters": [{"name": "runs", "in": "query", "schema": {"enum": ["0", "1"]},
                            "description": "0 leaves the run records out"}],
            "responses": {"200": _json(_ref("Library"), "The document"), **_errors(*_COMMON)}}},
        "/api/import": {"post": {
            "summary": "Import an export: idempotent, all or nothing", "operationId": "import",
            "requestBody": _body("Library"),
            "responses": {"200": _json(_ref("ImportResult"), "Created and skipped, by kind"),
                          **_errors(*_WRITE, 409)}}},
        "/api/testsets": testsets["list"],
        "/api/testsets/{id}": testsets["one"],
        "/api/evaluations": evaluations["list"],
        "/api/evaluations/{id}": evaluations["one"],
        "/api/templates": {
            "get": {"summary": "The built-in templates and the caller's own",
                    "operationId": "listTemplates",
                    "responses": {"200": _json(_ref("Templates"), "The templates"),
                                  **_errors(*_COMMON)}},
            "post": {"summary": "Save a template (its text needs {prompt})",
                     "operationId": "createTemplate", "requestBody": _body("TemplateCreate"),
                     "responses": {"201": _json(_ref("Template"), "The new template"),
                                   **_errors(*_WRITE, 409)}},
        },
        "/api/templates/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": _TEMPLATE_NAME}}],
            "get": {"summary": "One template", "operationId": "getTemplate",
                    "responses": {"200": _json(_ref("Template"), "The template"),
                                  **_errors(*_COMMON)}},
            "patch": {"summary": "Change one of the caller's templates (built-ins: 409)",
                      "operationId": "patchTemplate", "parameters": [_IF_MATCH],
                      "requestBody": _body("TemplatePatch"),
                      "responses": {"200": _json(_ref("Template"), "The changed template"),
                                    **_errors(*_WRITE, 409, 412)}},
            "delete": {"summary": "Delete one of the caller's templates (built-ins: 409)",
                       "operationId": "deleteTemplate",
                       "responses": {"204": {"description": "Deleted"},
                                     **_errors(*_COMMON, 409)}},
        },
        "/s/{token}": {"get": {
            "summary": "A shared prompt, read-only, without a key (HTML, or JSON if asked)",
            "operationId": "sharedPrompt",
            "parameters": [{"name": "token", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": _ID_PATTERN}}],
            "responses": {"200": {"description": "The prompt and its versions", "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}},
                **_errors(404, 503)}}},
    }
