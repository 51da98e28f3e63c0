"""CORS: off by default (same origin only), and PROMPTCAST_CORS_ORIGINS allows a list."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from promptcast.settings import Settings, SettingsError

from .conftest import RunningServer
from .sse_client import post_stream

pytestmark = pytest.mark.anyio

APP = "https://app.example.com"
OTHER = "http://localhost:5173"
EVIL = "https://evil.example.net"
KEY = "pc-live-alpha-7f3a9c1e5b"
PROMPT = {"prompt": "You are a helpful support bot."}


def preflight(origin: str, method: str = "POST",
              headers: str = "authorization,content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture
def cors(serve: Callable[..., RunningServer]) -> RunningServer:
    return serve(cors_origins=f"{APP}, {OTHER}")


async def test_off_by_default_no_cors_header_at_all(server: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        pre = await client.options(f"{server.url}/optimize-stream", headers=preflight(APP))
        simple = await client.get(f"{server.url}/v1/models", headers={"Origin": APP})
    streamed = await post_stream(f"{server.url}/optimize-stream", PROMPT,
                                 headers={"Origin": APP})
    assert pre.status_code == 405
    assert cors_headers(pre) == {}
    assert simple.status_code == 200 and cors_headers(simple) == {}
    assert streamed.status == 200 and cors_headers(
        httpx.Response(200, headers=streamed.headers)) == {}


@pytest.mark.parametrize("origin", [APP, OTHER])
@pytest.mark.parametrize("path", ["/optimize-stream", "/v1/chat/completions",
                                  "/prompt/optimize-prompt"])
async def test_an_allowed_origin_passes_the_preflight(
    cors: RunningServer, origin: str, path: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.options(
            cors.url + path,
            headers=preflight(origin, headers="authorization,content-type,idempotency-key,"
                                              "x-request-id"),
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PATCH", "DELETE", "OPTIONS"}
    allowed = {h.strip().lower()
               for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id", "idempotency-key",
            "x-request-id"} <= allowed
    assert "access-control-allow-credentials" not in response.headers


async def test_resume_and_cancel_preflights(cors: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        resume = await client.options(f"{cors.url}/optimize-stream/abc",
                                      headers=preflight(APP, "GET", "last-event-id"))
        cancel = await client.options(f"{cors.url}/optimize-stream/abc",
                                      headers=preflight(APP, "DELETE", "authorization"))
    assert resume.status_code == cancel.status_code == 200


@pytest.mark.parametrize(("origin", "method", "headers", "why"), [
    (EVIL, "POST", "content-type", "origin"),                  # not on the list
    ("https://app.example.com.evil.net", "POST", "content-type", "origin"),
    ("http://app.example.com", "POST", "content-type", "origin"),   # other scheme
    (APP, "PUT", "content-type", "method"),                    # a method we do not serve
    (APP, "POST", "x-custom-header", "headers"),               # a header we do not take
])
async def test_other_preflights_are_denied(
    cors: RunningServer, origin: str, method: str, headers: str, why: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.options(f"{cors.url}/optimize-stream",
                                        headers=preflight(origin, method, headers))
    assert response.status_code == 400
    assert response.text == f"Disallowed CORS {why}"
    if why == "origin":
        assert "access-control-allow-origin" not in response.headers


async def test_an_allowed_origin_can_read_a_stream_and_its_headers(cors: RunningServer) -> None:
    got = await post_stream(f"{cors.url}/optimize-stream", PROMPT, headers={"Origin": APP})
    assert got.status == 200 and got.terminal.data == "[DONE]"
    assert got.headers["access-control-allow-origin"] == APP
    exposed = {h.strip().lower()
               for h in got.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-stream-id", "x-request-id", "etag", "location"}
    assert got.headers["content-type"] == "text/event-stream; charset=utf-8"


async def test_another_origin_gets_no_cors_headers(cors: RunningServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{cors.url}/v1/models", headers={"Origin": EVIL})
    assert response.status_code == 200   # the browser, not the server, withholds it
    assert "access-control-allow-origin" not in response.headers


async def test_with_keys_the_preflight_needs_none_and_errors_are_readable(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve({"PROMPTCAST_API_KEYS": KEY}, cors_origins=APP)
    async with httpx.AsyncClient() as client:
        pre = await client.options(f"{server.url}/optimize-stream", headers=preflight(APP))
        denied = await client.get(f"{server.url}/v1/models", headers={"Origin": APP})
        allowed = await client.get(f"{server.url}/v1/models",
                                   headers={"Origin": APP, "Authorization": f"Bearer {KEY}"})
    assert pre.status_code == 200
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == APP
    assert allowed.status_code == 200


async def test_a_wildcard_allows_any_origin_without_credentials(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve(cors_origins="*")
    async with httpx.AsyncClient() as client:
        response = await client.options(f"{server.url}/optimize-stream",
                                        headers=preflight(EVIL))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("value", [
    "app.example.com", "https://app.example.com/", "https://app.example.com/path",
    "ftp://app.example.com", f"{APP}, https://", " , ",
])
def test_bad_origins_are_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="PROMPTCAST_CORS_ORIGINS"):
        Settings.from_env({"PROMPTCAST_CORS_ORIGINS": value})


def test_origins_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"PROMPTCAST_CORS_ORIGINS": f"{APP},{OTHER}"})
    assert settings.cors_origins == f"{APP},{OTHER}"
    assert Settings.from_env({}).cors_origins is None
