"""`promptcast optimize`: a rewrite streamed to the terminal, in-process or through a server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

from promptcast.cli.common import (
    Refused,
    add_timeouts,
    chunk_events,
    local_service,
    print_events,
    read_text,
    server_events,
)
from promptcast.errors import InvalidField
from promptcast.service.prompts import MODE_ALIASES
from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `optimize` to the command parsers."""
    optimize = commands.add_parser("optimize", help="rewrite a prompt, streamed to the terminal")
    optimize.add_argument("prompt", help="the prompt to rewrite ('-' reads standard input)")
    optimize.add_argument("--type", default="optimize", choices=list(MODE_ALIASES),
                          help="optimize (default), expand or shorten")
    optimize.add_argument("--model", help="model name (default: the configured default)")
    optimize.add_argument("--opening", help="the opening line the bot must say first")
    optimize.add_argument("--target-chars", type=int, help="length to aim for (expand/shorten)")
    optimize.add_argument("--previous", type=Path, metavar="FILE",
                          help="revise this earlier rewrite (a file, '-' for standard input) "
                               "according to --feedback")
    optimize.add_argument("--feedback", metavar="TEXT",
                          help="what to change in --previous, e.g. \"更简洁\" or "
                               "\"add a section on refunds\"")
    optimize.add_argument("--server", metavar="URL",
                          help="go through a running promptcast at URL instead of in-process")
    optimize.add_argument("--api-key", metavar="KEY",
                          help="the server's API key (with --server, when it requires one)")
    optimize.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    add_timeouts(optimize)
    optimize.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Stream the rewrite to standard output; 0 when it completed."""
    body = _body(args, settings)
    if args.server:
        return asyncio.run(_optimize_remote(args.server, body, sys.stdout, args.api_key))
    return asyncio.run(_optimize_local(settings, body, sys.stdout))


def _body(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.prompt == "-" and str(args.previous) == "-":
        raise InvalidField("only one of PROMPT and --previous can read standard input",
                           field="previous")
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    # Without --model, whoever runs the model picks its default (this process, or --server's).
    body: dict[str, Any] = {"prompt": prompt, "type": args.type, "model": args.model}
    if args.opening:
        body["opening"] = args.opening
    if args.target_chars:
        body["target_chars"] = args.target_chars
    # Both or neither: the server (or parse_optimize here) names the missing one.
    if args.previous is not None:
        body["previous"] = read_text(args.previous, "previous")
    if args.feedback is not None:
        body["feedback"] = args.feedback
    return body


async def _optimize_remote(server: str, body: dict[str, Any], out: TextIO,
                           api_key: str | None = None) -> int:
    try:
        async with server_events(server, "/optimize-stream", body, api_key) as events:
            return await print_events(events, out)
    except Refused as refused:
        print(f"promptcast: {refused}", file=sys.stderr)
        return 1


async def _optimize_local(settings: Settings, body: dict[str, Any], out: TextIO) -> int:
    from promptcast.service.schemas import parse_optimize

    request = parse_optimize(
        body, default_model=settings.models.default,
        max_prompt_chars=settings.max_prompt_chars, max_opening_chars=settings.max_opening_chars,
    )
    async with local_service(settings) as service:
        stream = await service.optimize(request)
        try:
            async with asyncio.timeout(settings.total_timeout):
                return await print_events(chunk_events(stream), out)
        finally:
            await stream.aclose()
