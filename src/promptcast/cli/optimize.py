"""`promptcast optimize`: a rewrite streamed to the terminal, in-process or through a server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx

from promptcast.cli.common import add_timeouts, chunk_events, print_events
from promptcast.service.prompts import MODE_ALIASES
from promptcast.settings import Settings
from promptcast.wire.sse import Decoder


def register(commands: Any) -> None:
    """Add `optimize` to the command parsers."""
    optimize = commands.add_parser("optimize", help="rewrite a prompt, streamed to the terminal")
    optimize.add_argument("prompt", help="the prompt to rewrite ('-' reads standard input)")
    optimize.add_argument("--type", default="optimize", choices=list(MODE_ALIASES),
                          help="optimize (default), expand or shorten")
    optimize.add_argument("--model", help="model name (default: the configured default)")
    optimize.add_argument("--opening", help="the opening line the bot must say first")
    optimize.add_argument("--target-chars", type=int, help="length to aim for (expand/shorten)")
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
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    # Without --model, whoever runs the model picks its default (this process, or --server's).
    body: dict[str, Any] = {"prompt": prompt, "type": args.type, "model": args.model}
    if args.opening:
        body["opening"] = args.opening
    if args.target_chars:
        body["target_chars"] = args.target_chars
    return body


async def _optimize_remote(server: str, body: dict[str, Any], out: TextIO,
                           api_key: str | None = None) -> int:
    async def events(response: httpx.Response) -> Any:
        decoder = Decoder()
        async for raw in response.aiter_bytes():
            for event in decoder.feed(raw):
                yield event

    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), trust_env=False) as client,
        client.stream(
            "POST", f"{server.rstrip('/')}/optimize-stream", json=body,
            headers={"Accept": "text/event-stream",
                     **({"Authorization": f"Bearer {api_key}"} if api_key else {})},
        ) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            print(f"promptcast: {response.status_code}: {message}", file=sys.stderr)
            return 1
        return await print_events(events(response), out)


async def _optimize_local(settings: Settings, body: dict[str, Any], out: TextIO) -> int:
    from promptcast.providers import ProviderRegistry
    from promptcast.redact import Redactor
    from promptcast.service.model_service import ModelService
    from promptcast.service.schemas import parse_optimize
    from promptcast.wire.choose import choose_transport

    request = parse_optimize(
        body, default_model=settings.models.default,
        max_prompt_chars=settings.max_prompt_chars, max_opening_chars=settings.max_opening_chars,
    )
    client = choose_transport(settings)
    registry = ProviderRegistry(settings, client, Redactor(settings.secrets()))
    try:
        service = ModelService(settings.models, registry)
        stream = await service.optimize(request)
        try:
            async with asyncio.timeout(settings.total_timeout):
                return await print_events(chunk_events(stream), out)
        finally:
            await stream.aclose()
    finally:
        await registry.aclose()
        await client.aclose()
