"""The library over MCP (issue 20): save, list and read prompts; prompts and templates as resources.

Every call acts for its owner, as the HTTP API's do: over HTTP the request's
API key's owner (`ops.auth.owner_of`), over stdio the one local owner. Bodies
are checked by the library's own parsers, so the errors are the API's.

    promptcast://prompts/{id}       a saved prompt: its current version's text
    promptcast://templates/{name}   a template (a built-in or the owner's): its text
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from promptcast.errors import InvalidField, LibraryOff, NotFound
from promptcast.mcp_server.services import Services
from promptcast.service import templates
from promptcast.storage import fields as f
from promptcast.storage.library import Library
from promptcast.storage.prompts import parse_prompt, parse_version

SAVE = "save_prompt"
LIST = "list_prompts"
GET = "get_prompt"

PROMPTS = "promptcast://prompts/"
TEMPLATES = "promptcast://templates/"
# The spec's code for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002

_OBJECT = {"type": "object"}


def library_tools() -> list[types.Tool]:
    """The library's tools."""
    text = {"type": "string", "minLength": 1, "maxLength": f.TEXT_CHARS}
    return [
        types.Tool(
            name=SAVE, title="Save a prompt",
            description=("Save a prompt in promptcast's library: a new prompt (give `name`), "
                         "or a new version of a saved one (give its `id`; the version becomes "
                         "its current one). Returns the prompt with the saved version."),
            input_schema={"type": "object", "properties": {
                "text": {**text, "description": "The prompt's text (this version's)."},
                "name": {"type": "string", "maxLength": f.NAME_CHARS,
                         "description": "A new prompt's name."},
                "id": {"type": "string", "description": "A saved prompt's id: add a version."},
                "mode": {"type": "string", "enum": ["optimize", "expand", "shorten"],
                         "description": "How this version was made."},
                "model": {"type": "string", "description": "The model that made it."},
                "opening": {"type": "string", "description": "The bot's opening line."},
                "feedback": {"type": "string",
                             "description": "The feedback this version answers."},
                "tags": {"type": "array", "items": {"type": "string"},
                         "description": "A new prompt's tags."},
            }, "required": ["text"], "additionalProperties": False},
            output_schema=_OBJECT,
            annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                              idempotent_hint=False, open_world_hint=False),
        ),
        types.Tool(
            name=LIST, title="List saved prompts",
            description="The saved prompts, most recently changed first, a page at a time.",
            input_schema={"type": "object", "properties": {
                "q": {"type": "string", "description": "Search names, tags and texts."},
                "tag": {"type": "string", "description": "Only prompts with this tag."},
                "limit": {"type": "integer", "minimum": 1, "maximum": f.MAX_LIST_LIMIT},
                "cursor": {"type": "string", "description": "The last page's next_cursor."},
            }, "additionalProperties": False},
            output_schema=_OBJECT,
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
        ),
        types.Tool(
            name=GET, title="Read a saved prompt",
            description="A saved prompt with its current version, and with `versions` every "
                        "version in order.",
            input_schema={"type": "object", "properties": {
                "id": {"type": "string", "minLength": 1, "description": "The prompt's id."},
                "versions": {"type": "boolean", "default": False},
            }, "required": ["id"], "additionalProperties": False},
            output_schema=_OBJECT,
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
        ),
    ]


def library_of(services: Services) -> Library:
    """The library; the HTTP API's 404 saying how to turn it on when there is none."""
    if services.library is None:
        raise LibraryOff("the library is off: set PROMPTCAST_DATABASE_URL "
                         "(sqlite:///path or postgresql://…) to keep prompts and runs")
    return services.library


def _string(arguments: dict[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidField(f"`{name}` must be a string", field=name)
    return value


async def call_library(services: Services, tool: str, owner: str,
                       arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one of the library's tools for `owner`; its result as JSON."""
    library = library_of(services)
    if tool == SAVE:
        prompt_id = _string(arguments, "id")
        if prompt_id is None:
            return await library.prompts.create(owner, parse_prompt(arguments))
        for name in ("name", "tags"):
            if name in arguments:
                raise InvalidField(f"`{name}` is a new prompt's; a version of {prompt_id!r} "
                                   "takes text, mode, model, opening and feedback", field=name)
        body = {k: v for k, v in arguments.items() if k != "id"}
        version = await library.prompts.add_version(owner, prompt_id, parse_version(body))
        prompt = await library.prompts.get(owner, prompt_id)
        return {**prompt, "version": version}
    if tool == LIST:
        limit = arguments.get("limit", f.LIST_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= f.MAX_LIST_LIMIT):
            raise InvalidField(f"`limit` must be a whole number from 1 to {f.MAX_LIST_LIMIT}",
                               field="limit")
        page = await library.prompts.search(
            owner, q=f.query_of(_string(arguments, "q")), tag=_string(arguments, "tag"),
            limit=limit, cursor=_string(arguments, "cursor"))
        return page.as_json()
    prompt_id = _string(arguments, "id")
    if not prompt_id:
        raise InvalidField("`id` is required: the prompt's id", field="id")
    prompt = await library.prompts.get(owner, prompt_id)
    if arguments.get("versions"):
        prompt["versions_list"] = await library.prompts.versions(owner, prompt_id)
    return prompt


# -- resources ---------------------------------------------------------------------------


RESOURCE_TEMPLATES = [
    types.ResourceTemplate(name="prompt", uri_template=PROMPTS + "{id}", mime_type="text/plain",
                           description="A saved prompt: its current version's text."),
    types.ResourceTemplate(name="template", uri_template=TEMPLATES + "{name}",
                           mime_type="text/plain",
                           description="A rewrite template: its text, with its {slots}."),
]


async def list_resources(services: Services, owner: str) -> list[types.Resource]:
    """The templates there are (built-ins, then the owner's), and the owner's saved prompts
    (the most recent page of them)."""
    found = [types.Resource(name=b.name, uri=TEMPLATES + b.name, mime_type="text/plain",
                            description=f"built-in template: {b.mode}, {b.language}")
             for b in templates.builtins().values()]
    library = services.library
    if library is None:
        return found
    for own in await library.templates.all(owner):
        found.append(types.Resource(
            name=own["name"], uri=TEMPLATES + own["name"], mime_type="text/plain",
            description=f"template: {own.get('mode')}, {own.get('language')}"))
    page = await library.prompts.search(owner, limit=f.MAX_LIST_LIMIT)
    for prompt in page.items:
        tags = ", ".join(prompt["tags"])
        found.append(types.Resource(
            name=prompt["name"], uri=PROMPTS + prompt["id"], mime_type="text/plain",
            description=f"saved prompt, version {prompt['current_version']}"
                        + (f"; tags: {tags}" if tags else "")))
    return found


async def read_resource(services: Services, owner: str, uri: str) -> str:
    """The text a resource's URI names; an MCP error if there is no such resource."""
    try:
        if uri.startswith(TEMPLATES):
            name = uri.removeprefix(TEMPLATES)
            builtin = templates.builtins().get(name)
            if builtin is not None:
                return builtin.text
            own = await library_of(services).templates.find(owner, name)
            if own is None:
                raise NotFound(f"no template {name!r}")
            return str(own["text"])
        if uri.startswith(PROMPTS):
            prompt = await library_of(services).prompts.get(owner, uri.removeprefix(PROMPTS))
            return str(prompt["version"]["text"])
    except NotFound as exc:
        raise MCPError(RESOURCE_NOT_FOUND, f"{exc.error_code}: {exc.message}",
                       {"uri": uri}) from None
    raise MCPError(RESOURCE_NOT_FOUND, f"no resource {uri!r}: promptcast's are "
                   f"{PROMPTS}{{id}} and {TEMPLATES}{{name}}", {"uri": uri})
