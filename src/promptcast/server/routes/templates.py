"""Templates (`/api/templates`): the built-ins (read-only, from the code) and the owner's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptcast.errors import Conflict, InvalidField, NotFound
from promptcast.ops.auth import owner_of
from promptcast.server.routes.library import NO_STORE, body_of, library_of, owner, reply
from promptcast.server.runtime import Runtime
from promptcast.service import templates as t
from promptcast.service.schemas import OptimizeRequest
from promptcast.service.template_lookup import with_template
from promptcast.storage.prompts import revision_of
from promptcast.storage.templates import parse_template


def builtin_json(b: t.Builtin) -> dict[str, Any]:
    return {"name": b.name, "language": b.language, "mode": b.mode, "text": b.text,
            "builtin": True}


def _read_only(name: str) -> Conflict:
    return Conflict(f"{name!r} is a built-in template, read-only: save a copy under "
                    "another name", field="name")


def check_new(name: str | None, text: str | None, field: str = "text") -> None:
    """What a stored template must be: not a built-in's name, its text a usable template."""
    if name is not None and name in t.builtins():
        raise _read_only(name)
    if text is not None:
        t.check(text, field)


def import_check() -> Callable[[str, str, str], None]:
    """The check an imported template goes through (transfer.py calls it)."""
    def check(name: str, text: str, where: str) -> None:
        if name in t.builtins():
            raise InvalidField(f"`{where}.name` {name!r} is a built-in template's name",
                               field=f"{where}.name")
        t.check(text, f"{where}.text")
    return check


async def list_templates(request: Request) -> Response:
    """GET /api/templates: the built-ins, then the caller's own."""
    own = await library_of(request).templates.all(owner(request))
    return reply({"items": [builtin_json(b) for b in t.builtins().values()] + own})


async def get_template(request: Request) -> Response:
    """GET /api/templates/{name}."""
    name = str(request.path_params["name"])
    builtin = t.builtins().get(name)
    if builtin is not None:
        return reply(builtin_json(builtin))
    found = await library_of(request).templates.find(owner(request), name)
    if found is None:
        raise NotFound(f"no template {name!r}")
    return reply(found, headers={"ETag": found["etag"]})


async def create_template(request: Request) -> Response:
    """POST /api/templates: {"name", "language", "mode", "text"}; the text needs {prompt}."""
    library = library_of(request)
    new = parse_template(await body_of(request))
    check_new(new.name, new.text)
    created = await library.templates.create(owner(request), new)
    return reply(created, 201, {"ETag": created["etag"],
                                "Location": f"/api/templates/{created['name']}"})


async def patch_template(request: Request) -> Response:
    """PATCH /api/templates/{name}: any of name, language, mode, text (If-Match optional)."""
    library = library_of(request)
    name = str(request.path_params["name"])
    if name in t.builtins():
        raise _read_only(name)
    expected = revision_of(request.headers.get("if-match"))
    patch = parse_template(await body_of(request), partial=True)
    check_new(patch.name, patch.text)
    changed = await library.templates.update(owner(request), name, patch, expected)
    return reply(changed, headers={"ETag": changed["etag"]})


async def delete_template(request: Request) -> Response:
    """DELETE /api/templates/{name}."""
    name = str(request.path_params["name"])
    if name in t.builtins():
        raise _read_only(name)
    await library_of(request).templates.delete(owner(request), name)
    return Response(status_code=204, headers=NO_STORE)


async def resolve(rt: Runtime, client: str | None, body: OptimizeRequest) -> OptimizeRequest:
    """`body` with its template's text: a built-in, or one of `client`'s own (else 404)."""
    return await with_template(rt.library, owner_of(client), body)
