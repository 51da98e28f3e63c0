"""What the commands share: settings from flags, the stream limits' flags, a stream printed."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import orjson

from promptcast.settings import Settings
from promptcast.wire.sse import Event


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


def _content(event: Event) -> str:
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
        out.write(_content(event))
        out.flush()
    print("\npromptcast: the stream was cut off before it was complete", file=sys.stderr)
    return 1
