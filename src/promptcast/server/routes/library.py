"""The library's routes: prompts and versions, runs, export and import, share links.

Every route acts for the request's owner (`owner_of`): an API key's name (or
its digest-derived id), or the one local owner without keys. Another owner's
object is a 404 whatever the method, so a guessed id learns nothing.
"""

from __future__ import annotations

import html
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from promptcast.errors import InvalidField, LibraryOff, PayloadTooLarge
from promptcast.ops.auth import owner_of
from promptcast.server.http import read_json, runtime_of
from promptcast.server.records import client_of
from promptcast.storage import fields as f
from promptcast.storage.library import Library
from promptcast.storage.prompts import (
    parse_patch,
    parse_prompt,
    parse_version,
    revision_of,
)
from promptcast.storage.runs import KINDS

# Private data: never kept by a browser's or a proxy's cache.
NO_STORE = {"Cache-Control": "no-store"}
SHARE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
             "frame-ancestors 'none'; form-action 'none'")


def library_of(request: Request) -> Library:
    """The runtime's library; a 404 that says how to turn it on when there is none."""
    library = runtime_of(request).library
    if library is None:
        raise LibraryOff("the library is off: set PROMPTCAST_DATABASE_URL "
                         "(sqlite:///path or postgresql://…) to keep prompts and runs")
    return library


def owner(request: Request) -> str:
    """Whom this request acts for."""
    return owner_of(client_of(request.scope))


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`body` as JSON (orjson: a page of runs is hundreds of kilobytes), never cached."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


async def body_of(request: Request, limit: int = f.LIBRARY_BODY_BYTES) -> dict[str, Any]:
    """The JSON object body, up to `limit` bytes."""
    return await read_json(request, limit)


def _with_etag(prompt: dict[str, Any], status: int = 200,
               location: str | None = None) -> Response:
    headers = {"ETag": prompt["etag"]}
    if location:
        headers["Location"] = location
    return reply(prompt, status, headers)


def _param(request: Request, name: str) -> str:
    return str(request.path_params[name])


# ---------------------------------------------------------------- the library itself


async def library_info(request: Request) -> Response:
    """GET /api/library: whether it is on, whom the caller is, the limits."""
    library = library_of(request)
    return reply({
        "owner": owner(request),
        "database": library.db.dialect,
        "recording": library.recorder is not None,
        "limits": {"name_chars": f.NAME_CHARS, "text_chars": f.TEXT_CHARS,
                   "tags": f.MAX_TAGS, "tag_chars": f.TAG_CHARS,
                   "list_limit": f.LIST_LIMIT, "max_list_limit": f.MAX_LIST_LIMIT,
                   "import_bytes": runtime_of(request).settings.import_max_bytes},
    })


# ---------------------------------------------------------------- prompts


async def create_prompt(request: Request) -> Response:
    """POST /api/prompts: a prompt and its first version."""
    library = library_of(request)
    new = parse_prompt(await body_of(request))
    prompt = await library.prompts.create(owner(request), new)
    return _with_etag(prompt, 201, f"/api/prompts/{prompt['id']}")


async def list_prompts(request: Request) -> Response:
    """GET /api/prompts?q=&tag=&limit=&cursor=: newest change first."""
    library = library_of(request)
    params = request.query_params
    page = await library.prompts.search(
        owner(request), q=f.query_of(params.get("q")), tag=f.query_of(params.get("tag"), "tag"),
        limit=f.limit_of(params.get("limit")), cursor=params.get("cursor"))
    return reply(page.as_json())


async def get_prompt(request: Request) -> Response:
    """GET /api/prompts/{id}: the prompt and its current version, with its ETag."""
    prompt = await library_of(request).prompts.get(owner(request), _param(request, "id"))
    return _with_etag(prompt)


async def patch_prompt(request: Request) -> Response:
    """PATCH /api/prompts/{id}: name, tags, current_version; If-Match guards against a stale tab."""
    library = library_of(request)
    expected = revision_of(request.headers.get("if-match"))
    patch = parse_patch(await body_of(request))
    prompt = await library.prompts.update(owner(request), _param(request, "id"), patch, expected)
    return _with_etag(prompt)


async def delete_prompt(request: Request) -> Response:
    """DELETE /api/prompts/{id}: the prompt and its versions."""
    library = library_of(request)
    expected = revision_of(request.headers.get("if-match"))
    await library.prompts.delete(owner(request), _param(request, "id"), expected)
    return Response(status_code=204, headers=NO_STORE)


async def add_version(request: Request) -> Response:
    """POST /api/prompts/{id}/versions: the next version; it becomes the current one."""
    library = library_of(request)
    prompt_id = _param(request, "id")
    version = await library.prompts.add_version(owner(request), prompt_id,
                                                parse_version(await body_of(request)))
    return reply(version, 201,
                 {"Location": f"/api/prompts/{prompt_id}/versions/{version['number']}"})


async def list_versions(request: Request) -> Response:
    """GET /api/prompts/{id}/versions: every version, in order."""
    versions = await library_of(request).prompts.versions(owner(request),
                                                          _param(request, "id"))
    return reply({"items": versions})


async def share_prompt(request: Request) -> Response:
    """POST /api/prompts/{id}/share: a read-only link that needs no key."""
    token = await library_of(request).prompts.share(owner(request), _param(request, "id"))
    return reply({"url": f"/s/{token}"})


async def unshare_prompt(request: Request) -> Response:
    """DELETE /api/prompts/{id}/share: the link stops working."""
    await library_of(request).prompts.unshare(owner(request), _param(request, "id"))
    return Response(status_code=204, headers=NO_STORE)


# ---------------------------------------------------------------- runs


async def list_runs(request: Request) -> Response:
    """GET /api/runs?prompt=&q=&kind=&limit=&cursor=: newest first."""
    library = library_of(request)
    params = request.query_params
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidField(f"`kind` must be one of {', '.join(KINDS)}", field="kind")
    prompt = params.get("prompt") or None
    page = await library.runs.search(
        owner(request), prompt=None if prompt is None else f.public_id(prompt, "prompt"),
        q=f.query_of(params.get("q")), kind=kind, limit=f.limit_of(params.get("limit")),
        cursor=params.get("cursor"))
    return reply(page.as_json())


async def get_run(request: Request) -> Response:
    """GET /api/runs/{id}: one run (its id is the stream's, X-Stream-Id)."""
    return reply(await library_of(request).runs.get(owner(request), _param(request, "id")))


async def delete_run(request: Request) -> Response:
    """DELETE /api/runs/{id}: forget one run (the page's history deletes it here)."""
    await library_of(request).runs.delete(owner(request), _param(request, "id"))
    return Response(status_code=204, headers=NO_STORE)


# ---------------------------------------------------------------- export, import


async def export_library(request: Request) -> Response:
    """GET /api/export[?runs=0]: one document with everything the caller owns."""
    runs = request.query_params.get("runs", "1") not in ("0", "false", "no")
    document = await library_of(request).export(owner(request), runs=runs)
    name = f"promptcast-library-{document['exported_at'][:10]}.json"
    return reply(document, headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def import_library(request: Request) -> Response:
    """POST /api/import: an export document; idempotent, all or nothing."""
    library = library_of(request)
    limit = runtime_of(request).settings.import_max_bytes
    try:
        document = await body_of(request, limit)
    except PayloadTooLarge:
        raise InvalidField(f"the document is larger than the {limit}-byte import limit "
                           "(PROMPTCAST_IMPORT_MAX_BYTES)", field="body") from None
    from promptcast.server.routes.templates import import_check  # it imports this module

    counts = await library.import_document(owner(request), document, import_check())
    return reply(counts.as_json())


# ---------------------------------------------------------------- share links


async def shared_prompt(request: Request) -> Response:
    """GET /s/{token}: a shared prompt and its versions, read-only, no key (HTML or JSON)."""
    library = library_of(request)
    prompt = await library.prompts.shared(_param(request, "token"))
    headers = {**NO_STORE, "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse(prompt, headers=headers)
    return HTMLResponse(share_page(prompt), headers={
        **headers, "Content-Security-Policy": SHARE_CSP, "X-Content-Type-Options": "nosniff"})


def share_page(prompt: dict[str, Any]) -> str:
    """A read-only page of a shared prompt: every text escaped, no script at all."""
    e = html.escape
    versions = []
    for v in reversed(prompt["versions"]):
        meta = [f"v{v['number']}", v["mode"], v["model"] or "", v["created_at"][:16].replace(
            "T", " ")]
        if v["parent"] is not None:
            meta.append(f"← v{v['parent']}")
        feedback = (f'<p class="share-feedback">{e(v["feedback"])}</p>'
                    if v["feedback"] else "")
        opening = (f'<p class="share-opening">{e(v["opening"])}</p>' if v["opening"] else "")
        current = ' data-current="true"' if v["number"] == prompt["current_version"] else ""
        versions.append(
            f'<article class="share-version" id="v{v["number"]}"{current}>'
            f'<h2>{e(" · ".join(m for m in meta if m))}</h2>{feedback}{opening}'
            f'<pre class="share-text">{e(v["text"])}</pre></article>')
    tags = "".join(f'<li>{e(t)}</li>' for t in prompt["tags"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        f'<title>{e(prompt["name"])} — promptcast</title>'
        '<link rel="stylesheet" href="/static/style.css">'
        '<link rel="stylesheet" href="/static/library.css"></head>'
        '<body class="share-page"><main class="share">'
        f'<h1 id="shareName">{e(prompt["name"])}</h1>'
        f'<ul class="share-tags">{tags}</ul>'
        '<p class="share-note">A prompt shared read-only from promptcast.</p>'
        f'{"".join(versions)}</main></body></html>'
    )
