"""`/mcp` on the running server: Streamable HTTP through the SDK's session manager.

The app's middleware has already checked the API key (`ops/auth.py` counts
`/mcp` among the API routes). The endpoint opens with the app's lifespan
(`McpEndpoint.run()`), and its route finds it in the lifespan's state.

Each request is given a `Departure` in its scope, fired when the server tells
the request's `receive` that the client disconnected: a tool call on that
request is then cancelled, and its upstream with it.

With API keys on, a session belongs to the key that opened it: the key's
digest id goes to the SDK as the request's user, and the SDK answers 404 to
another key presenting that session's id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Message, Receive, Scope, Send

from promptcast.mcp_server.server import DEPARTURE_SCOPE_KEY, Departure, build_server
from promptcast.mcp_server.services import Services
from promptcast.ops.ratelimit import CLIENT_SCOPE_KEY


class McpEndpoint:
    """The MCP server over Streamable HTTP, for one app's life."""

    STATE_KEY = "mcp"  # where the lifespan's state keeps it

    def __init__(self, services: Services) -> None:
        # Sessions (not stateless): a client's `notifications/cancelled` must reach the
        # session its call runs in. No DNS-rebinding host check: the other API routes
        # have none either; API keys guard them all alike.
        settings = services.settings
        self._manager = StreamableHTTPSessionManager(
            app=build_server(services),
            # A body may carry any tool's call: the largest the HTTP API takes (POST /eval's).
            max_request_body_size=max(settings.max_body_bytes, settings.eval_max_body_bytes))

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[McpEndpoint]:
        """Serve sessions until the block ends; then every session and call is cancelled."""
        async with self._manager.run():
            yield self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        departure = Departure()
        scope[DEPARTURE_SCOPE_KEY] = departure
        client = scope.get(CLIENT_SCOPE_KEY)
        if isinstance(client, str) and client.startswith("key:"):
            # The key's digest id, never the key: it is all the SDK compares.
            scope["user"] = AuthenticatedUser(AccessToken(token=client, client_id=client,
                                                          scopes=[]))

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                departure.left()
            return message

        await self._manager.handle_request(scope, watched, send)


class McpRoute:
    """The ASGI app at `/mcp`: the endpoint the lifespan opened."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint: McpEndpoint = scope["state"][McpEndpoint.STATE_KEY]
        await endpoint(scope, receive, send)
