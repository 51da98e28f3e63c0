"""`promptcast serve | optimize | models`: the command line, where errors become messages."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

from promptcast import __version__
from promptcast.errors import PromptcastError
from promptcast.service.prompts import MODE_ALIASES
from promptcast.settings import Settings, SettingsError
from promptcast.wire.sse import Decoder, Event


def _timeouts(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stream limits (seconds)")
    group.add_argument("--first-token-timeout", type=float, metavar="S",
                       help="end with event: timeout if no token comes within S (default 30)")
    group.add_argument("--idle-timeout", type=float, metavar="S",
                       help="end with event: timeout after S without data (default 30)")
    group.add_argument("--total-timeout", type=float, metavar="S",
                       help="end with event: timeout when a stream lasts S (default 120)")
    group.add_argument("--heartbeat-interval", type=float, metavar="S",
                       help="send ': keep-alive' after S of silence (default 15)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptcast",
        description="Stream an LLM's rewrite of a prompt, through a production-grade SSE relay.",
    )
    parser.add_argument("--version", action="version", version=f"promptcast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the page and the API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    serve.add_argument("--upstream", metavar="URL",
                       help="relay to the model service at URL instead of running it in-process")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--allow-anonymous", action="store_true", default=None,
                       help="serve a non-loopback --host without PROMPTCAST_API_KEYS "
                            "(anyone who reaches it can use your models)")
    _timeouts(serve)

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
    _timeouts(optimize)

    models = commands.add_parser("models", help="list the configured models and their status")
    models.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        models_file=getattr(args, "models", None),
        upstream_url=(getattr(args, "upstream", None) or "").rstrip("/") or None,
        log_level=getattr(args, "log_level", None),
        first_token_timeout=getattr(args, "first_token_timeout", None),
        idle_timeout=getattr(args, "idle_timeout", None),
        total_timeout=getattr(args, "total_timeout", None),
        heartbeat_interval=getattr(args, "heartbeat_interval", None),
        allow_anonymous=getattr(args, "allow_anonymous", None),
    )


def serve(settings: Settings) -> None:
    """Run the app under uvicorn; SIGTERM drains open streams before exiting 0."""
    import signal
    import socket
    from types import FrameType

    import uvicorn

    from promptcast.ops.logs import configure
    from promptcast.ops.process import log_prepared, prepare_for_streams
    from promptcast.server.app import create_app
    from promptcast.server.direct import HttpProtocol
    from promptcast.wire import scan

    configure(settings.log_level)
    app = create_app(settings)
    # After the app is built, so its objects are frozen out of collections;
    # before the server starts threads, so growing the fd table waits for none.
    log_prepared(prepare_for_streams())
    scan.warn_if_python()

    class DrainingServer(uvicorn.Server):
        # uvicorn stops accepting and waits for open connections; we make the
        # streams among them end by themselves once the drain time is up.
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                # A drained shutdown is a clean one: exit 0 rather than have
                # uvicorn re-raise SIGTERM once it is done.
                self._captured_signals.remove(sig)
            if self.loop is not None:
                self.loop.call_soon_threadsafe(app.state.drain.start)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http=HttpProtocol,  # httptools, plus the direct channel for event streams
        access_log=False,  # promptcast.access logs each request, with its request id
        server_header=False,  # no `server: uvicorn` advertised on every response
        # Past the drain, streams end with `shutting_down` frames within seconds.
        timeout_graceful_shutdown=int(settings.drain_timeout) + 10,
    )
    DrainingServer(config).run()


def _body(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    # Without --model, whoever runs the model picks its default (this process, or --server's).
    body: dict[str, Any] = {"prompt": prompt, "type": args.type, "model": args.model}
    if args.opening:
        body["opening"] = args.opening
    if args.target_chars:
        body["target_chars"] = args.target_chars
    return body


def _content(event: Event) -> str:
    """The text delta of one chunk event, or '' for usage-only chunks."""
    chunk = orjson.loads(event.data)
    choices = chunk.get("choices") or []
    if choices:
        return str((choices[0].get("delta") or {}).get("content") or "")
    return ""


async def _print_events(events: Any, out: TextIO) -> int:
    try:
        return await _write_events(events, out)
    except BaseException:
        # The message goes to stderr: end the partial text's line first.
        out.write("\n")
        out.flush()
        raise


async def _write_events(events: Any, out: TextIO) -> int:
    async for event in events:
        if event.event in ("error", "timeout"):
            payload = orjson.loads(event.data)
            out.write("\n")
            out.flush()
            print(f"promptcast: {event.event}: {payload.get('message')}", file=sys.stderr)
            return 1
        if event.data == "[DONE]":
            out.write("\n")
            out.flush()
            return 0
        out.write(_content(event))
        out.flush()
    print("\npromptcast: the stream was cut off before it was complete", file=sys.stderr)
    return 1


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
        return await _print_events(events(response), out)


async def _optimize_local(settings: Settings, body: dict[str, Any], out: TextIO) -> int:
    from promptcast.providers import ProviderRegistry
    from promptcast.redact import Redactor
    from promptcast.relay.source import ChunkEvents
    from promptcast.service.model_service import ModelService
    from promptcast.service.schemas import parse_optimize
    from promptcast.wire.http_client import HTTPClient

    request = parse_optimize(
        body, default_model=settings.models.default,
        max_prompt_chars=settings.max_prompt_chars, max_opening_chars=settings.max_opening_chars,
    )
    client = HTTPClient(connect_timeout=settings.connect_timeout)
    registry = ProviderRegistry(settings, client, Redactor(settings.models.secrets()))
    try:
        service = ModelService(settings.models, registry)
        events = ChunkEvents(await service.optimize(request))
        try:
            async with asyncio.timeout(settings.total_timeout):
                return await _print_events(events, out)
        finally:
            await events.aclose()
    finally:
        await registry.aclose()
        await client.aclose()


def list_models(settings: Settings, out: TextIO) -> None:
    rows = [("MODEL", "PROVIDER", "STATUS")]
    for spec in settings.models:
        status = "ok" if spec.available else f"unavailable: {spec.unavailable_reason}"
        if spec.name == settings.models.default:
            status += " (default)"
        rows.append((spec.name, spec.provider, status))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, provider, status in rows:
        out.write(f"{name:<{width[0]}}  {provider:<{width[1]}}  {status}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            from promptcast.ops.auth import anonymous_refusal

            if (refusal := anonymous_refusal(settings)) is not None:
                print(f"promptcast: {refusal}", file=sys.stderr)
                return 2
            serve(settings)
            return 0
        if args.command == "models":
            list_models(settings, sys.stdout)
            return 0
        body = _body(args, settings)
        if args.server:
            return asyncio.run(_optimize_remote(args.server, body, sys.stdout, args.api_key))
        return asyncio.run(_optimize_local(settings, body, sys.stdout))
    except SettingsError as exc:
        print(f"promptcast: configuration: {exc}", file=sys.stderr)
        return 2
    except PromptcastError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        print(f"promptcast: {exc.message}{field}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("promptcast: timeout: the stream took too long", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"promptcast: cannot reach the server: {type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
