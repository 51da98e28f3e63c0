"""A rewrite's template found by name: a built-in, or one of its owner's own (issue 20)."""

from __future__ import annotations

from dataclasses import replace

from promptcast.errors import NotFound
from promptcast.service import templates
from promptcast.service.schemas import OptimizeRequest
from promptcast.storage.library import Library


async def with_template(library: Library | None, owner: str,
                        body: OptimizeRequest) -> OptimizeRequest:
    """`body` with its template's text: a built-in, or one of `owner`'s (else a 404)."""
    name = body.template
    if name is None:
        return body
    builtin = templates.builtins().get(name)
    if builtin is not None:
        return replace(body, template_text=builtin.text, template_language=builtin.language)
    found = None
    if library is not None:
        found = await library.templates.find(owner, name)
    if found is None:
        raise NotFound(f"no template {name!r}: GET /api/templates lists the ones you can use")
    return replace(body, template_text=found["text"], template_language=found["language"])
