"""Test sets and evaluation results (`/api/testsets`, `/api/evaluations`), for issue 21's runs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from promptcast.server.http import runtime_of
from promptcast.server.routes.library import NO_STORE, body_of, library_of, owner, reply
from promptcast.storage import fields as f
from promptcast.storage.prompts import revision_of
from promptcast.storage.testsets import parse_evaluation, parse_testset


def _id(request: Request) -> str:
    return str(request.path_params["id"])


async def create_testset(request: Request) -> Response:
    """POST /api/testsets: {"name", "description"?, "cases": [{"message": …}, …]}."""
    library = library_of(request)
    testset = await library.testsets.create(owner(request),
                                            parse_testset(await body_of(request)))
    return reply(testset, 201, {"ETag": testset["etag"],
                                "Location": f"/api/testsets/{testset['id']}"})


async def list_testsets(request: Request) -> Response:
    """GET /api/testsets?limit=&cursor=: newest change first, without their cases."""
    params = request.query_params
    page = await library_of(request).testsets.search(
        owner(request), limit=f.limit_of(params.get("limit")), cursor=params.get("cursor"))
    return reply(page.as_json())


async def get_testset(request: Request) -> Response:
    """GET /api/testsets/{id}: the test set with its cases."""
    testset = await library_of(request).testsets.get(owner(request), _id(request))
    return reply(testset, headers={"ETag": testset["etag"]})


async def patch_testset(request: Request) -> Response:
    """PATCH /api/testsets/{id}: any of name, description, cases (If-Match optional)."""
    library = library_of(request)
    expected = revision_of(request.headers.get("if-match"))
    patch = parse_testset(await body_of(request), partial=True)
    testset = await library.testsets.update(owner(request), _id(request), patch, expected)
    return reply(testset, headers={"ETag": testset["etag"]})


async def delete_testset(request: Request) -> Response:
    """DELETE /api/testsets/{id}."""
    await library_of(request).testsets.delete(owner(request), _id(request))
    return Response(status_code=204, headers=NO_STORE)


async def create_evaluation(request: Request) -> Response:
    """POST /api/evaluations: one evaluation's summary and cells, as its run reported them."""
    library = library_of(request)
    data = await body_of(request, runtime_of(request).settings.import_max_bytes)
    evaluation = await library.evaluations.create(owner(request), parse_evaluation(data))
    return reply(evaluation, 201, {"Location": f"/api/evaluations/{evaluation['id']}"})


async def list_evaluations(request: Request) -> Response:
    """GET /api/evaluations?testset=&limit=&cursor=: newest first, without their cells."""
    params = request.query_params
    testset = params.get("testset") or None
    page = await library_of(request).evaluations.search(
        owner(request), testset=None if testset is None else f.public_id(testset, "testset"),
        limit=f.limit_of(params.get("limit")), cursor=params.get("cursor"))
    return reply(page.as_json())


async def get_evaluation(request: Request) -> Response:
    """GET /api/evaluations/{id}: with every cell."""
    return reply(await library_of(request).evaluations.get(owner(request), _id(request)))


async def delete_evaluation(request: Request) -> Response:
    """DELETE /api/evaluations/{id}."""
    await library_of(request).evaluations.delete(owner(request), _id(request))
    return Response(status_code=204, headers=NO_STORE)
