"""API keys: which routes they guard, 401 / 403, the key file, the resume query key, and
the refusal to serve a public address without them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptcast.ops.auth import ApiKeyMiddleware, anonymous_refusal, is_loopback
from promptcast.settings import Settings, SettingsError, read_api_keys

from . import asgi_stub
from .asgi_stub import Inner
from .conftest import Process, RunningServer, free_port, models_file
from .sse_client import get_stream, post_stream
from .test_resumable import read_some
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio

KEY_A = "pc-live-alpha-7f3a9c1e5b"
KEY_B = "pc-live-bravo-2d8e4f6a0c"
WRONG = "pc-live-WRONG-SECRET-9999"
PROMPT = {"prompt": "You are a helpful support bot."}
CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def keyed(serve: Callable[..., RunningServer]) -> RunningServer:
    return serve({"PROMPTCAST_API_KEYS": f"{KEY_A}, {KEY_B}"})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# (method, path, JSON body, status with a good key): one per protected route family.
ROUTES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("POST", "/optimize-stream", PROMPT, 200),
    ("POST", "/prod-api/optimize-stream", PROMPT, 200),
    ("GET", "/optimize-stream/nosuchstream", None, 404),
    ("DELETE", "/optimize-stream/nosuchstream", None, 404),
    ("GET", "/prod-api/optimize-stream/nosuchstream", None, 404),
    ("POST", "/prompt/optimize-prompt", PROMPT, 200),
    ("POST", "/v1/chat/completions", CHAT, 200),
    ("GET", "/v1/models", None, 200),
    ("GET", "/v1/no-such-route", None, 404),
]


async def call(url: str, method: str, path: str, body: dict[str, Any] | None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, url + path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body", "ok"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
async def test_every_api_route_needs_a_key(
    keyed: RunningServer, method: str, path: str, body: dict[str, Any] | None, ok: int
) -> None:
    none = await call(keyed.url, method, path, body)
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert none.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in none.json()["error"]["message"]

    wrong = await call(keyed.url, method, path, body, bearer(WRONG))
    assert wrong.status_code == 403
    assert wrong.json()["error"] == {"code": "forbidden", "message": "the API key is not valid"}
    assert "www-authenticate" not in wrong.headers

    for key in (KEY_A, KEY_B):
        good = await call(keyed.url, method, path, body, bearer(key))
        assert good.status_code == ok, good.text


@pytest.mark.parametrize("path", [
    "/v1/%6Dodels", "/%6Fptimize-stream/abc", "/v1/models/", "/prod-api/optimize-stream/",
    "/V1/models", "/v1//models",
])
async def test_spelling_a_path_differently_does_not_get_past_the_keys(
    keyed: RunningServer, path: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(keyed.url + path)
    # Refused, or not an API route at all: never an answer from one.
    assert response.status_code in (401, 404), response.text
    assert b'"object":"list"' not in response.content


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/readyz", "/metrics"])
async def test_the_page_and_the_probes_stay_open(keyed: RunningServer, path: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(keyed.url + path)
    assert response.status_code == 200


@pytest.mark.parametrize("value", [
    f"Basic {KEY_A}", "Bearer", KEY_A, f"Token {KEY_A}",
])
async def test_anything_but_a_bearer_token_is_no_key(keyed: RunningServer, value: str) -> None:
    response = await call(keyed.url, "GET", "/v1/models", None, {"Authorization": value})
    assert response.status_code == 401


async def test_the_scheme_is_case_insensitive_and_the_key_is_not(keyed: RunningServer) -> None:
    ok = await call(keyed.url, "GET", "/v1/models", None, {"Authorization": f"bearer {KEY_A}"})
    upper = await call(keyed.url, "GET", "/v1/models", None, bearer(KEY_A.upper()))
    prefix = await call(keyed.url, "GET", "/v1/models", None, bearer(KEY_A[:-1]))
    longer = await call(keyed.url, "GET", "/v1/models", None, bearer(KEY_A + "0"))
    assert ok.status_code == 200
    assert (upper.status_code, prefix.status_code, longer.status_code) == (403, 403, 403)


async def test_a_wrong_key_is_never_echoed(keyed: RunningServer) -> None:
    for method, path, body, _ in ROUTES:
        response = await call(keyed.url, method, path, body, bearer(WRONG))
        assert response.status_code == 403
        assert WRONG.encode() not in response.content
        assert b"SECRET" not in response.content
        assert all(WRONG not in value for value in response.headers.values())


async def test_configured_keys_appear_nowhere_a_client_can_read(keyed: RunningServer) -> None:
    async with httpx.AsyncClient(headers=bearer(KEY_A)) as client:
        for path in ("/", "/healthz", "/readyz", "/metrics", "/v1/models"):
            response = await client.get(keyed.url + path)
            assert KEY_A.encode() not in response.content, path
            assert KEY_B.encode() not in response.content, path
    streamed = await post_stream(f"{keyed.url}/optimize-stream", PROMPT, headers=bearer(KEY_A))
    assert streamed.status == 200 and KEY_A.encode() not in streamed.raw


async def test_a_streamed_answer_with_a_key_is_the_same_as_without(
    keyed: RunningServer, server: RunningServer, upstream: UpstreamDouble
) -> None:
    with_key = await post_stream(f"{keyed.url}/optimize-stream", PROMPT, headers=bearer(KEY_A))
    without = await post_stream(f"{server.url}/optimize-stream", PROMPT)
    assert with_key.content == without.content == "Hello, world!"
    assert with_key.terminal.data == "[DONE]"
    # Our key is ours: it is not forwarded to the model's API.
    assert all("authorization" not in seen.headers for seen in upstream.requests)


# -- the key file ---------------------------------------------------------------

async def test_keys_from_a_file(serve: Callable[..., RunningServer], tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# promptcast keys\n\n  {KEY_A}  \n# {KEY_B} (revoked)\n{KEY_B}-new\n",
                    encoding="utf-8")
    server = serve({"PROMPTCAST_API_KEYS": f"@{path}"})
    for key, status in ((KEY_A, 200), (f"{KEY_B}-new", 200), (KEY_B, 403),
                        ("# promptcast keys", 403)):
        response = await call(server.url, "GET", "/v1/models", None, bearer(key))
        assert response.status_code == status, key


def test_key_parsing() -> None:
    assert read_api_keys(f"{KEY_A},{KEY_B}") == (KEY_A, KEY_B)
    assert read_api_keys(f" {KEY_A} , , {KEY_A} ") == (KEY_A,)


@pytest.mark.parametrize(("spec", "words"), [
    (" , ", "holds no key"),
    (f"{KEY_A},pc live {WRONG}", "key 2 in PROMPTCAST_API_KEYS has a space"),
    (f"{KEY_A},pc-ключ-{WRONG}", "non-ASCII"),
    ("@/nonexistent/promptcast-keys", "cannot read the key file '/nonexistent/promptcast-keys'"),
])
def test_bad_keys_are_refused_without_showing_them(spec: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PROMPTCAST_API_KEYS": spec})
    assert "PROMPTCAST_API_KEYS" in str(info.value)
    assert words in str(info.value)
    assert WRONG not in str(info.value) and KEY_A not in str(info.value)


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="holds no key"):
        Settings.from_env({"PROMPTCAST_API_KEYS": f"@{path}"})


# -- ?api_key= on the resume route only -----------------------------------------

async def test_the_resume_route_takes_the_key_as_a_query_parameter(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble
) -> None:
    server = serve({"PROMPTCAST_API_KEYS": KEY_A})
    pieces = [f"w{i} " for i in range(20)]
    upstream.enqueue(Script.chat([*pieces], gap=0.01))
    stream_id, first = await read_some(f"{server.url}/optimize-stream",
                                       {**PROMPT, "resumable": True}, 3, bearer(KEY_A))
    resume = f"{server.url}/optimize-stream/{stream_id}"
    rest = await get_stream(f"{resume}?api_key={KEY_A}&last_event_id={first[-1].id}")
    assert rest.status == 200
    assert "".join(e.data for e in first + rest.events).count("w19 ") == 1
    assert rest.events[-1].data == "[DONE]"
    twin = await get_stream(
        f"{server.url}/prod-api/optimize-stream/{stream_id}?last_event_id={first[-1].id}"
        f"&api_key={KEY_A}")
    assert twin.status == 200 and twin.data == rest.data

    wrong = await get_stream(f"{resume}?api_key={WRONG}")
    assert wrong.status == 403 and WRONG.encode() not in wrong.raw
    missing = await get_stream(resume)
    assert missing.status == 401


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/optimize-stream", PROMPT),
    ("POST", "/v1/chat/completions", CHAT),
    ("GET", "/v1/models", None),
    ("DELETE", "/optimize-stream/abc", None),
    ("GET", "/optimize-stream/abc/more", None),
])
async def test_no_other_route_takes_the_query_key(
    serve: Callable[..., RunningServer], method: str, path: str, body: dict[str, Any] | None
) -> None:
    server = serve({"PROMPTCAST_API_KEYS": KEY_A})
    response = await call(server.url, method, f"{path}?api_key={KEY_A}", body)
    assert response.status_code == 401


async def test_the_query_key_never_reaches_the_routes() -> None:
    inner = Inner()
    query = f"last_event_id=abc.3&api_key={KEY_A}&x=%2F".encode()
    scope = {"type": "http", "method": "GET", "path": "/optimize-stream/abc",
             "query_string": query, "headers": [], "client": ("127.0.0.1", 5000)}
    await ApiKeyMiddleware(inner, keys=(KEY_A,))(scope, asgi_stub.receive, asgi_stub.send)
    passed = inner.scopes
    assert passed[0]["query_string"] == b"last_event_id=abc.3&x=%2F"
    assert passed[0]["promptcast.client"].startswith("key:")
    assert KEY_A not in passed[0]["promptcast.client"]
    assert scope["query_string"] == query   # the server's own scope is not changed


async def test_the_middleware_passes_send_through_untouched() -> None:
    inner = Inner()
    scope = {"type": "http", "method": "POST", "path": "/optimize-stream", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {KEY_A}".encode())], "client": None}
    await ApiKeyMiddleware(inner, keys=(KEY_A,))(scope, asgi_stub.receive, asgi_stub.send)
    assert inner.sends == [asgi_stub.send]


# -- a public address needs keys ------------------------------------------------

@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("example.com", False), ("", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_refusal_is_lifted_by_keys_or_on_purpose() -> None:
    public = Settings.from_env({"PROMPTCAST_HOST": "0.0.0.0"})
    assert anonymous_refusal(public) is not None
    assert anonymous_refusal(Settings.from_env({})) is None
    assert anonymous_refusal(Settings.from_env({"PROMPTCAST_HOST": "0.0.0.0",
                                                "PROMPTCAST_API_KEYS": KEY_A})) is None
    for flag in ("1", "true", "YES"):
        settings = Settings.from_env({"PROMPTCAST_HOST": "0.0.0.0",
                                      "PROMPTCAST_ALLOW_ANONYMOUS": flag})
        assert settings.allow_anonymous is True
        assert anonymous_refusal(settings) is None
    assert Settings.from_env({"PROMPTCAST_ALLOW_ANONYMOUS": "no"}).allow_anonymous is False
    with pytest.raises(SettingsError, match="PROMPTCAST_ALLOW_ANONYMOUS"):
        Settings.from_env({"PROMPTCAST_ALLOW_ANONYMOUS": "maybe"})


def _serve_env(tmp_path: Path, upstream: UpstreamDouble, **extra: str) -> dict[str, str]:
    from .test_cli import cli_env

    return cli_env(PROMPTCAST_MODELS_FILE=str(models_file(tmp_path, upstream)),
                   PROMPTCAST_DEFAULT_MODEL="scripted", **extra)


@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], []])
def test_serving_a_public_address_without_keys_exits_2(
    tmp_path: Path, upstream: UpstreamDouble, args: list[str]
) -> None:
    env = _serve_env(tmp_path, upstream)
    if not args:
        env["PROMPTCAST_HOST"] = "0.0.0.0"
    result = subprocess.run(
        [sys.executable, "-m", "promptcast", "serve", "--port", str(free_port()), *args],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "PROMPTCAST_API_KEYS" in result.stderr and "--allow-anonymous" in result.stderr
    assert "0.0.0.0" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("how", ["flag", "keys"])
def test_a_public_address_is_served_with_keys_or_on_purpose(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process], how: str
) -> None:
    env = _serve_env(tmp_path, upstream)
    args = ["--host", "0.0.0.0"]
    if how == "flag":
        args.append("--allow-anonymous")
    else:
        env["PROMPTCAST_API_KEYS"] = KEY_A
    process = processes(args, env, tmp_path / "public.log")
    assert httpx.get(f"{process.url}/healthz", timeout=5).json() == {"status": "ok"}
    models = httpx.get(f"{process.url}/v1/models", timeout=5)
    assert models.status_code == (200 if how == "flag" else 401)


def test_serve_help_documents_allow_anonymous() -> None:
    result = subprocess.run([sys.executable, "-m", "promptcast", "serve", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert "--allow-anonymous" in result.stdout


def test_the_key_never_reaches_the_server_log(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    env = _serve_env(tmp_path, upstream, PROMPTCAST_API_KEYS=KEY_A, PROMPTCAST_LOG_LEVEL="debug")
    process = processes([], env, tmp_path / "server.log")
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{process.url}/v1/models", headers=bearer(KEY_A)).status_code == 200
        assert client.get(f"{process.url}/v1/models", headers=bearer(WRONG)).status_code == 403
        assert client.get(f"{process.url}/optimize-stream/abc?api_key={KEY_A}").status_code == 404
        assert client.get(f"{process.url}/optimize-stream/abc?api_key={WRONG}").status_code == 403
        assert client.post(f"{process.url}/optimize-stream", json=PROMPT,
                           headers=bearer(KEY_A)).status_code == 200
    process.proc.terminate()
    process.proc.wait(10)
    log = process.output()
    assert "GET /optimize-stream/abc 403" in log   # the requests were logged, at debug level
    # The stream's own line stands in for its access line: one record, not two.
    assert log.count('"path":"/optimize-stream"') == 1
    assert "POST /optimize-stream" not in log
    assert KEY_A not in log and WRONG not in log and "SECRET" not in log
