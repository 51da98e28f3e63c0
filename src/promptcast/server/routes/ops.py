"""The routes around the streams: the page, the model list, health, readiness, metrics, OpenAPI."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from promptcast.errors import DatabaseUnavailable, StoreUnavailable
from promptcast.ops.metrics import CONTENT_TYPE
from promptcast.providers.llama import local_model_present
from promptcast.server.http import runtime_of
from promptcast.server.openapi import document as openapi_document
from promptcast.service.optimizer_models import optimizer_specs

STATIC = Path(__file__).parent.parent.parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


async def list_models(request: Request) -> Response:
    """GET /v1/models: every configured model, with whether it is usable and why not; then the
    optimizer's names (`promptcast-optimize/<model>`, ...) for each usable one."""
    models = runtime_of(request).settings.models
    return JSONResponse({
        "object": "list",
        "data": [
            {
                "id": spec.name,
                "object": "model",
                "created": 0,
                "owned_by": spec.provider,
                "description": spec.description,
                "available": spec.available,
                "unavailable_reason": spec.unavailable_reason,
                "default": spec.name == models.default,
            }
            for spec in models
        ] + [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "promptcast",
                "description": f"{mode.value} the prompt in the last user message, on {spec.name}",
                "available": True,
                "unavailable_reason": None,
                "default": False,
            }
            for name, mode, spec in optimizer_specs(models)
        ],
    })


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """GET /readyz: the streams store and the library's database answer, the default model works."""
    rt = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        await rt.store.ping()
        checks["store"] = "ok"
    except StoreUnavailable as exc:
        checks["store"] = exc.message
    if rt.library is not None:
        try:
            await rt.library.db.ping()
            checks["database"] = "ok"
        except DatabaseUnavailable as exc:
            checks["database"] = exc.message
    spec = rt.settings.models.get_spec(rt.settings.models.default)
    if not spec.available:
        checks["default_model"] = f"{spec.name}: {spec.unavailable_reason}"
    elif spec.provider == "llama" and not local_model_present(rt.settings.local_model_path):
        checks["default_model"] = f"{spec.name}: the model file is missing"
    else:
        checks["default_model"] = "ok"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json: this API's OpenAPI document."""
    s = runtime_of(request).settings
    return JSONResponse(openapi_document(max_prompt_chars=s.max_prompt_chars,
                                         max_opening_chars=s.max_opening_chars,
                                         max_eval_cells=s.eval_max_cells,
                                         max_eval_concurrency=s.eval_max_concurrency))


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format."""
    return Response(runtime_of(request).metrics.render(), media_type=CONTENT_TYPE)


async def index(request: Request) -> Response:
    """GET /: the page."""
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP,
                                                        "X-Content-Type-Options": "nosniff"})
