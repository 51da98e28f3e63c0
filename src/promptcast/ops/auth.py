"""API keys, CORS and the middleware stack that guards the API routes.

    browser / SDK / curl
        │
    CORSMiddleware        only with PROMPTCAST_CORS_ORIGINS: preflights, Access-Control-*
    ApiKeyMiddleware      which paths are the API; who the client is; 401 / 403
    RateLimitMiddleware   requests per minute, concurrent streams; 429 (ratelimit.py)
        │
    the routes (api.py)

All three are plain ASGI (not `BaseHTTPMiddleware`, which hides disconnects):
they read the request's scope, answer errors themselves, and otherwise call the
app with `send` untouched, so a stream's chunks cost nothing here.

The API routes are `/optimize-stream*`, `/prod-api/*`, `/prompt/*`, `/v1/*`,
`/api/*` and `/mcp`; `/`, `/static/*`, `/s/*` (shared prompts), `/healthz`,
`/readyz` and `/metrics` stay open. With keys
configured, an API request needs `Authorization: Bearer <key>`: none is a 401
with `WWW-Authenticate: Bearer`, a key we do not know a 403. The presented key
is compared, in constant time, with every configured key (digests of both, so
that not even the length of a key shows in the timing).

`EventSource` cannot send headers, so a resume (`GET /optimize-stream/<id>`,
and its `/prod-api` twin) also accepts the key as `?api_key=<key>`; no other
route does. The parameter is removed from the query string before the routes
see it. A key in a URL can end up in proxies' access logs: prefer the header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from promptcast.errors import Forbidden, Unauthorized
from promptcast.ops.logs import STREAM_LOGGED
from promptcast.ops.ratelimit import (
    CLIENT_SCOPE_KEY,
    LimiterBackend,
    MemoryLimiter,
    RateLimitMiddleware,
    RedisLimiter,
    send_error,
)
from promptcast.settings import ApiKey, Settings, cors_origin_list, read_named_api_keys

_API_PATHS = ("/optimize-stream", "/eval", "/mcp")
_API_PREFIXES = ("/optimize-stream/", "/prod-api/", "/prompt/", "/v1/", "/api/", "/mcp/")
# Who owns what (issue 20): a key's name, `key-<digest>` for an unnamed key, and
# without keys the one local owner.
LOCAL_OWNER = "local"
_KEY_CLIENT = "key:"
_RESUME_PREFIXES = ("/optimize-stream/", "/prod-api/optimize-stream/")
_CORS_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
_CORS_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key",
                 "X-Request-ID", "If-Match"]
_CORS_EXPOSE = ["X-Stream-Id", "X-Request-ID", "ETag", "Location"]


def is_api_path(path: str) -> bool:
    """Whether `path` is one of the API routes that keys and limits guard."""
    return path in _API_PATHS or path.startswith(_API_PREFIXES)


def _is_resume(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    for prefix in _RESUME_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            return bool(rest) and "/" not in rest
    return False


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def digests(keys: tuple[str, ...]) -> list[bytes]:
    """What is kept of the configured keys: their digests."""
    return [_digest(k.encode("ascii")) for k in keys]


def owner_id(key: ApiKey) -> str:
    """The owner a key stands for: its name, or an id derived from its digest."""
    return key.name or f"key-{_digest(key.key.encode('ascii')).hex()[:12]}"


def owners(keys: tuple[ApiKey | str, ...]) -> dict[bytes, str]:
    """Each configured key's digest → the owner it stands for (a plain str: an unnamed key)."""
    named = (ApiKey(k) if isinstance(k, str) else k for k in keys)
    return {_digest(k.key.encode("ascii")): owner_id(k) for k in named}


def key_client(owner: str) -> str:
    """The client identity (`promptcast.client`) of a request made with a key of `owner`."""
    return _KEY_CLIENT + owner


def owner_of(client: str | None) -> str:
    """The owner of a request whose client (`promptcast.client` in its scope) is `client`."""
    if client is not None and client.startswith(_KEY_CLIENT):
        return client[len(_KEY_CLIENT):]
    return LOCAL_OWNER


def matching_key(known: list[bytes], presented: bytes) -> bytes | None:
    """The digest among `known` that `presented` matches, or None."""
    digest = _digest(presented)
    matched: bytes | None = None
    for candidate in known:
        # Every key is compared, whichever matches: no early exit to time.
        if hmac.compare_digest(digest, candidate):
            matched = candidate
    return matched


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of `Authorization: Bearer <token>`, or None when there is none."""
    name: bytes
    value: bytes
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def _split_query_key(query: bytes) -> tuple[bytes | None, bytes]:
    """(the `api_key` parameter's value, the query string without it), other bytes untouched."""
    found: bytes | None = None
    kept: list[bytes] = []
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == b"api_key":
            found = unquote_to_bytes(value.replace(b"+", b" "))
        else:
            kept.append(part)
    return found, b"&".join(kept)


class ApiKeyMiddleware:
    """Plain ASGI: marks API requests with their client, and checks keys when there are any.

    Without keys the client is the peer's address (after uvicorn's proxy-header
    handling); with keys it is `key:` + the key's owner (its name, or a digest
    prefix of the key), so the key itself is never stored, logged or sent to Redis.
    """

    def __init__(self, app: ASGIApp, *, keys: tuple[ApiKey | str, ...] = ()) -> None:
        self.app = app
        self._owners = owners(keys)
        self._digests = list(self._owners)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        own = dict(scope)
        try:
            await self._checked(own, receive, send)
        finally:
            # A stream's own line was logged on our copy: the access line must
            # hear of it on the original, or a stream is logged twice.
            if own.get(STREAM_LOGGED):
                scope[STREAM_LOGGED] = True

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        query_key: bytes | None = None
        if b"api_key" in query:
            # Never passed on, whether or not this route accepts it.
            query_key, scope["query_string"] = _split_query_key(query)
        if not self._digests:
            peer = scope.get("client")
            scope[CLIENT_SCOPE_KEY] = f"ip:{peer[0] if peer else 'unknown'}"
            await self.app(scope, receive, send)
            return
        presented = bearer(scope["headers"])
        if presented is None and query_key and _is_resume(scope["method"], scope["path"]):
            presented = query_key
        if presented is None:
            await send_error(Unauthorized(
                "this API needs a key: send `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": 'Bearer realm="promptcast"'},
            ), scope, receive, send)
            return
        matched = matching_key(self._digests, presented)
        if matched is None:
            await send_error(Forbidden("the API key is not valid"), scope, receive, send)
            return
        scope[CLIENT_SCOPE_KEY] = key_client(self._owners[matched])
        await self.app(scope, receive, send)


def build_middleware(settings: Settings) -> list[Middleware]:
    """The security middleware for `Starlette(middleware=...)`, outermost first.

    Nothing is added for what is off: no CORS headers without origins, no key
    checks without keys, no counting without limits.
    """
    stack: list[Middleware] = []
    if settings.cors_origins:
        stack.append(Middleware(
            CORSMiddleware,
            allow_origins=cors_origin_list(settings.cors_origins),
            allow_methods=_CORS_METHODS,
            allow_headers=_CORS_HEADERS,
            expose_headers=_CORS_EXPOSE,
            allow_credentials=False,
            max_age=600,
        ))
    keys = read_named_api_keys(settings.api_keys) if settings.api_keys else ()
    limited = settings.rate_limit_per_minute > 0 or settings.max_concurrent_streams > 0
    if keys or limited:
        stack.append(Middleware(ApiKeyMiddleware, keys=keys))
    if limited:
        backend: LimiterBackend = (
            RedisLimiter(settings.redis_url, lease_ttl=settings.lease_ttl)
            if settings.redis_url else MemoryLimiter()
        )
        stack.append(Middleware(
            RateLimitMiddleware,
            backend=backend,
            per_minute=settings.rate_limit_per_minute,
            max_streams=settings.max_concurrent_streams,
        ))
    return stack


def is_loopback(host: str) -> bool:
    """Whether serving on `host` reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def anonymous_refusal(settings: Settings) -> str | None:
    """Why `serve` must not start as configured, or None: a public address needs keys."""
    if settings.api_keys or settings.allow_anonymous or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve {settings.host} without API keys: anyone who can reach it "
        "could spend your model credits. Set PROMPTCAST_API_KEYS (comma-separated keys, "
        "or @/path/to/file with one key a line), or pass --allow-anonymous "
        "(PROMPTCAST_ALLOW_ANONYMOUS=1) to serve it open on purpose."
    )
