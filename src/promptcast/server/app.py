"""The ASGI app: its route table, its middleware and its lifespan. Add a route here.

A route is a handler in `server/routes/` (it takes a Starlette `Request`; the
shared resources are `http.runtime_of(request)`), listed in `create_app`'s
table below. The routes that start streams are `start.START_ROUTES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from promptcast.errors import PromptcastError
from promptcast.mcp_server.http import McpEndpoint, McpRoute
from promptcast.ops.auth import build_middleware
from promptcast.ops.logs import RequestIdMiddleware
from promptcast.ops.metrics import Metrics
from promptcast.relay.drain import Drain
from promptcast.server.door import Door
from promptcast.server.http import error_response
from promptcast.server.protocol import DOOR
from promptcast.server.routes import library, templates, testsets
from promptcast.server.routes.eval import eval_run
from promptcast.server.routes.ops import (
    STATIC,
    healthz,
    index,
    list_models,
    metrics,
    openapi_json,
    readyz,
)
from promptcast.server.routes.resumable import cancel_stream, resume_stream
from promptcast.server.routes.streams import start_stream
from promptcast.server.runtime import open_runtime
from promptcast.server.start import START_ROUTES
from promptcast.settings import Settings, read_named_api_keys


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                        status_code=exc.status_code, headers=exc.headers)


async def _promptcast_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PromptcastError)
    return error_response(exc)


def routes() -> list[BaseRoute]:
    """Every route of the app."""
    return [
        Route("/", index, methods=["GET"]),
        *(Route(path, start_stream, methods=["POST"]) for path in START_ROUTES),
        Route("/optimize-stream/{stream_id}", resume_stream, methods=["GET"]),
        Route("/optimize-stream/{stream_id}", cancel_stream, methods=["DELETE"]),
        Route("/prod-api/optimize-stream/{stream_id}", resume_stream, methods=["GET"]),
        Route("/prod-api/optimize-stream/{stream_id}", cancel_stream, methods=["DELETE"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/eval", eval_run, methods=["POST"]),
        Route("/mcp", McpRoute()),  # MCP's Streamable HTTP: POST, GET and DELETE
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *LIBRARY_ROUTES,
    ]


# -- the library (issue 20) ------------------------------------------------------
LIBRARY_ROUTES = [
    Route("/api/library", library.library_info, methods=["GET"]),
    Route("/api/prompts", library.list_prompts, methods=["GET"]),
    Route("/api/prompts", library.create_prompt, methods=["POST"]),
    Route("/api/prompts/{id}", library.get_prompt, methods=["GET"]),
    Route("/api/prompts/{id}", library.patch_prompt, methods=["PATCH"]),
    Route("/api/prompts/{id}", library.delete_prompt, methods=["DELETE"]),
    Route("/api/prompts/{id}/versions", library.list_versions, methods=["GET"]),
    Route("/api/prompts/{id}/versions", library.add_version, methods=["POST"]),
    Route("/api/prompts/{id}/share", library.share_prompt, methods=["POST"]),
    Route("/api/prompts/{id}/share", library.unshare_prompt, methods=["DELETE"]),
    Route("/api/runs", library.list_runs, methods=["GET"]),
    Route("/api/runs/{id}", library.get_run, methods=["GET"]),
    Route("/api/runs/{id}", library.delete_run, methods=["DELETE"]),
    Route("/api/export", library.export_library, methods=["GET"]),
    Route("/api/import", library.import_library, methods=["POST"]),
    Route("/api/testsets", testsets.list_testsets, methods=["GET"]),
    Route("/api/testsets", testsets.create_testset, methods=["POST"]),
    Route("/api/testsets/{id}", testsets.get_testset, methods=["GET"]),
    Route("/api/testsets/{id}", testsets.patch_testset, methods=["PATCH"]),
    Route("/api/testsets/{id}", testsets.delete_testset, methods=["DELETE"]),
    Route("/api/evaluations", testsets.list_evaluations, methods=["GET"]),
    Route("/api/evaluations", testsets.create_evaluation, methods=["POST"]),
    Route("/api/evaluations/{id}", testsets.get_evaluation, methods=["GET"]),
    Route("/api/evaluations/{id}", testsets.delete_evaluation, methods=["DELETE"]),
    Route("/api/templates", templates.list_templates, methods=["GET"]),
    Route("/api/templates", templates.create_template, methods=["POST"]),
    Route("/api/templates/{name}", templates.get_template, methods=["GET"]),
    Route("/api/templates/{name}", templates.patch_template, methods=["PATCH"]),
    Route("/api/templates/{name}", templates.delete_template, methods=["DELETE"]),
    Route("/s/{token}", library.shared_prompt, methods=["GET"]),
]


def create_app(settings: Settings) -> Starlette:
    """The ASGI app; HTTP clients and providers are opened in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with (open_runtime(settings, app.state.drain, app.state.metrics) as runtime,
                    McpEndpoint(runtime).run() as mcp):
            state: dict[str, Any] = {"runtime": runtime, mcp.STATE_KEY: mcp}
            keys = read_named_api_keys(settings.api_keys) if settings.api_keys else ()
            door = Door.for_app(app, runtime, keys)
            if door is not None:
                state[DOOR] = door
            yield state

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, PromptcastError: _promptcast_error},
        # Request ids outermost; then CORS, API keys and limits (auth.py), each only if on.
        middleware=[Middleware(RequestIdMiddleware), *build_middleware(settings)],
    )
    # Outside the lifespan: the server's signal handler reaches it to start draining.
    app.state.drain = Drain(settings.drain_timeout)
    app.state.metrics = Metrics()
    return app
