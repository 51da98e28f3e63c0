"""`promptcast mcp`: the MCP tools over stdio, for Claude Desktop, Cursor and other MCP hosts."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from promptcast.cli.common import add_timeouts
from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `mcp` to the command parsers."""
    mcp = commands.add_parser(
        "mcp", help="serve the MCP tools (optimize_prompt, try_prompt) over stdio",
        description="Serve promptcast's MCP tools on stdin and stdout, for an MCP host "
                    "(Claude Desktop, Cursor) that starts it as a command. Logs go to stderr.")
    mcp.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    mcp.add_argument("--upstream", metavar="URL",
                     help="rewrite through the model service at URL instead of in-process")
    mcp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    add_timeouts(mcp)
    mcp.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve one MCP client until it closes stdin."""
    from promptcast.ops.logs import configure

    configure(settings.log_level)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from promptcast.mcp_server.stdio import serve_stdio
    from promptcast.ops.metrics import Metrics
    from promptcast.relay.drain import Drain
    from promptcast.server.runtime import open_runtime

    async with open_runtime(settings, Drain(settings.drain_timeout), Metrics()) as runtime:
        await serve_stdio(runtime)
