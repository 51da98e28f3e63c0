"""What the commands share: settings from flags, the stream limits' flags, a stream printed,
the model service in this process, and a server's event streams."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
import orjson

from promptcast.errors import InvalidField
from promptcast.providers.base import ChunkStream
from promptcast.settings import Settings
from promptcast.wire.sse import DONE, Decoder, Event

if TYPE_CHECKING:
    from promptcast.service.model_service import ModelService


def add_timeouts(parser: argparse.ArgumentParser) -> None:
    """The stream-limit flags every command that streams takes."""
    group = parser.add_argument_group("stream limits (seconds)")
    group.add_argument("--first-token-timeout", type=float, metavar="S",
                       help="end with event: timeout if no token comes within S (default 30)")
    group.add_argument("--idle-timeout", type=float, metavar="S",
                       help="end with event: timeout after S without data (default 30)")
    group.add_argument("--total-timeout", type=float, metavar="S",
                       help="end with event: timeout when a stream lasts S (default 120)")
    group.add_argument("--heartbeat-interval", type=float, metavar="S",
                       help="send ': keep-alive' after S of silence (default 15)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The one settings object: the environment, with the flags given on top."""
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
        database_url=getattr(args, "database_url", None),
    )


def content_of(event: Event) -> str:
    """The text delta of one chunk event, or '' for usage-only chunks."""
    chunk = orjson.loads(event.data)
    choices = chunk.get("choices") or []
    if choices:
        return str((choices[0].get("delta") or {}).get("content") or "")
    return ""


async def print_events(events: Any, out: TextIO) -> int:
    """Print each chunk's text as it arrives; 0 at `[DONE]`, 1 after an error frame or a cut."""
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
        out.write(content_of(event))
        out.flush()
    print("\npromptcast: the stream was cut off before it was complete", file=sys.stderr)
    return 1


async def chunk_events(stream: ChunkStream) -> AsyncIterator[Event]:
    """A chunk stream, iterated, as the events a server would send: each chunk, then `[DONE]`."""
    async for chunk in stream:
        yield Event(chunk.data)
    yield DONE


@asynccontextmanager
async def local_service(settings: Settings) -> AsyncIterator[ModelService]:
    """The model service in this process, its providers and HTTP client closed after."""
    from promptcast.providers import ProviderRegistry
    from promptcast.redact import Redactor
    from promptcast.service.model_service import ModelService
    from promptcast.wire.choose import choose_transport

    client = choose_transport(settings)
    registry = ProviderRegistry(settings, client, Redactor(settings.secrets()))
    try:
        yield ModelService(settings.models, registry)
    finally:
        await registry.aclose()
        await client.aclose()


class Refused(Exception):
    """The server answered a stream start with an HTTP error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@asynccontextmanager
async def server_events(server: str, path: str, body: dict[str, Any],
                        api_key: str | None = None) -> AsyncIterator[AsyncIterator[Event]]:
    """POST `body` to a running promptcast and read its event stream; Refused if it says no."""
    async def events(response: httpx.Response) -> AsyncIterator[Event]:
        decoder = Decoder()
        async for raw in response.aiter_bytes():
            for event in decoder.feed(raw):
                yield event

    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), trust_env=False) as client,
        client.stream(
            "POST", f"{server.rstrip('/')}{path}", json=body,
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
            raise Refused(response.status_code, message)
        yield events(response)


def read_text(path: Path, field: str) -> str:
    """A text file's content, or standard input's for `-`; a clear error naming `field`."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidField(f"cannot read {field} file {str(path)!r}: {reason}",
                           field=field) from None
