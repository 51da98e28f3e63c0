"""`promptcast try`: a prompt (or two) answering a customer's message, streamed and labelled.

Each prompt runs as the system message of an ordinary chat completion:
system = the prompt with its {{variables}} filled, assistant = the opening line
if there is one, user = the message. Two prompts stream at the same time; the
first is printed as it arrives, the second is kept until the first is done and
then printed (and followed) in turn, so the two answers never interleave.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections.abc import AsyncIterable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from promptcast.cli.common import (
    Refused,
    add_timeouts,
    chunk_events,
    content_of,
    local_service,
    read_text,
    server_events,
)
from promptcast.errors import InvalidField, PromptcastError
from promptcast.providers.base import Message
from promptcast.service.variables import fill as fill_variables
from promptcast.service.variables import try_messages, variables
from promptcast.settings import Settings
from promptcast.wire.sse import Event

if TYPE_CHECKING:
    from promptcast.service.model_service import ModelService



def register(commands: Any) -> None:
    """Add `try` to the command parsers."""
    parser = commands.add_parser(
        "try", help="run a prompt (or two, side by side) on a customer's message")
    parser.add_argument("prompt", type=Path, metavar="PROMPT_FILE",
                        help="the system prompt to try ('-' reads standard input)")
    parser.add_argument("--message", required=True, metavar="TEXT",
                        help="the customer's message, e.g. \"我的订单三天了还没发货，能退款吗？\"")
    parser.add_argument("--against", type=Path, metavar="OTHER_FILE",
                        help="a second prompt answering the same message, e.g. the rewrite")
    parser.add_argument("--model", help="model name (default: the configured default)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="fill {{NAME}} in the prompts (repeat for each variable)")
    parser.add_argument("--opening", metavar="TEXT",
                        help="the bot's first message, sent as the conversation's first turn")
    parser.add_argument("--server", metavar="URL",
                        help="go through a running promptcast at URL instead of in-process")
    parser.add_argument("--api-key", metavar="KEY",
                        help="the server's API key (with --server, when it requires one)")
    parser.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    add_timeouts(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Stream each prompt's answer to standard output; 0 when every one completed."""
    columns = _columns(args)
    return asyncio.run(_try(columns, args, settings, sys.stdout))


def parse_vars(pairs: list[str]) -> dict[str, str]:
    """`name=value` pairs as a dict; a pair without `=` is an error naming `--var`."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise InvalidField(f"--var takes NAME=VALUE, not {pair!r}", field="var")
        values[name.strip()] = value
    return values


def fill(prompt: str, values: dict[str, str]) -> str:
    """`prompt` with each {{name}} replaced by its value; an unfilled one is an error."""
    missing = [name for name in variables(prompt) if name not in values]
    if missing:
        given = ", ".join(f"--var {name}=..." for name in missing)
        raise InvalidField(
            f"the prompt has unfilled variables: {', '.join('{{' + n + '}}' for n in missing)}; "
            f"give {given}", field="var")
    return fill_variables(prompt, values)


def messages_for(system: str, message: str, opening: str | None) -> list[dict[str, str]]:
    """The messages of one try: the prompt, the opening line if any, the customer's message."""
    return [m.as_dict() for m in try_messages(system, (Message("user", message),), opening)]


def _columns(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, filled prompt) for each prompt file."""
    if str(args.prompt) == "-" and str(args.against) == "-":
        raise InvalidField("only one of PROMPT_FILE and --against can read standard input",
                           field="against")
    values = parse_vars(args.var)
    files = [("prompt", args.prompt)] + ([("against", args.against)] if args.against else [])
    columns = []
    for field, path in files:
        text = read_text(path, field)
        if not text.strip():
            raise InvalidField(f"{'standard input' if str(path) == '-' else path} is empty",
                               field=field)
        label = "standard input" if str(path) == "-" else str(path)
        columns.append((label, fill(text, values)))
    return columns


class _Held(io.StringIO):
    """A column's output: kept while another column prints, then passed on live.

    Its failure goes to standard error at once, named by the column's label.
    """

    def __init__(self, label: str | None) -> None:
        super().__init__()
        self.label = label
        self.live: TextIO | None = None

    def fail(self, message: str) -> None:
        """End the column's text, and say on standard error why it ended."""
        self.write("\n")
        self.flush()
        where = f"[{self.label}] " if self.label else ""
        print(f"promptcast: {where}{message}", file=sys.stderr, flush=True)

    def write(self, text: str) -> int:
        if self.live is not None:
            return self.live.write(text)
        return super().write(text)

    def flush(self) -> None:
        if self.live is not None:
            self.live.flush()

    def go_live(self, out: TextIO) -> None:
        out.write(self.getvalue())
        out.flush()
        self.live = out


async def _try(columns: list[tuple[str, str]], args: argparse.Namespace, settings: Settings,
               out: TextIO) -> int:
    labelled = len(columns) > 1
    runs = []
    for label, system in columns:
        sink = _Held(label if labelled else None)
        if labelled:
            sink.write(f"── {label} ──\n")
        if args.opening:
            sink.write(f"[opening] {args.opening}\n")
        body = {"model": args.model, "stream": True,
                "messages": messages_for(system, args.message, args.opening)}
        runs.append((body, sink))
    if args.server:
        statuses = await _in_turn(
            [_remote(args.server, body, args.api_key, sink) for body, sink in runs],
            [sink for _, sink in runs], out)
    else:
        # Known before anything starts: an unknown model is one error, not one per column.
        settings.models.get(args.model or settings.models.default)
        async with local_service(settings) as service:
            statuses = await _in_turn(
                [_local(service, settings, body, sink) for body, sink in runs],
                [sink for _, sink in runs], out)
    return 0 if all(status == 0 for status in statuses) else 1


async def _in_turn(columns: list[Coroutine[Any, Any, int]], sinks: list[_Held],
                   out: TextIO) -> list[int]:
    """Run every column at once; print the first live, each next one once the last is done."""
    running = [asyncio.ensure_future(column) for column in columns]
    try:
        statuses = []
        for index, task in enumerate(running):
            if index:
                out.write("\n")
            sinks[index].go_live(out)
            statuses.append(await task)
        return statuses
    finally:
        for task in running:
            task.cancel()
        # Each cancelled column closes its upstream before the command exits.
        await asyncio.gather(*running, return_exceptions=True)


async def _local(service: ModelService, settings: Settings, body: dict[str, Any],
                 sink: _Held) -> int:
    from promptcast.service.schemas import parse_chat

    request = parse_chat(body, default_model=settings.models.default).request
    try:
        stream = await service.chat(request)
    except PromptcastError as exc:
        sink.fail(exc.message)
        return 1
    try:
        async with asyncio.timeout(settings.total_timeout):
            return await _print(chunk_events(stream), sink)
    except TimeoutError:
        sink.fail(f"timeout: the answer took longer than {settings.total_timeout:g} s")
        return 1
    except PromptcastError as exc:
        sink.fail(exc.message)
        return 1
    finally:
        await stream.aclose()


async def _remote(server: str, body: dict[str, Any], api_key: str | None, sink: _Held) -> int:
    try:
        async with server_events(server, "/v1/chat/completions", body, api_key) as events:
            return await _print(events, sink)
    except Refused as refused:
        sink.fail(str(refused))
        return 1


async def _print(events: AsyncIterable[Event], sink: _Held) -> int:
    """One column's answer, as it arrives; 0 at `[DONE]`, 1 at an error frame or a cut."""
    async for event in events:
        if event.event in ("error", "timeout"):
            sink.fail(f"{event.event}: {_message(event.data)}")
            return 1
        if event.data == "[DONE]":
            sink.write("\n")
            sink.flush()
            return 0
        error = _error_chunk(event.data)
        if error is not None:
            sink.fail(f"error: {error}")
            return 1
        sink.write(content_of(event))
        sink.flush()
    sink.fail("the stream was cut off before it was complete")
    return 1


def _message(data: str) -> str:
    try:
        return str(orjson.loads(data).get("message") or data)
    except (orjson.JSONDecodeError, AttributeError):
        return data


def _error_chunk(data: str) -> str | None:
    """The message of an OpenAI-shaped error chunk (how /v1 reports a failure mid-stream)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return None
