"""The MCP server over stdio (`promptcast mcp`), as Claude Desktop and Cursor start it."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from promptcast.mcp_server.server import build_server
from promptcast.mcp_server.services import Services


async def serve_stdio(services: Services) -> None:
    """Serve one client on this process's stdin and stdout until it closes stdin.

    While it serves, the SDK points file descriptor 1 at stderr, so nothing else
    (a log line, the embedded model's chatter) can corrupt the protocol's stream.
    """
    server = build_server(services)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
