"""The command line: `promptcast serve | optimize | try | models | eval | prompts | db | mcp`.

Each command is a module of this package with `register(commands)`, which adds
its parser and sets `run(args, settings) -> exit status`. Add a command there
and list it in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx

from promptcast import __version__
from promptcast.cli import db, eval, mcp, models, optimize, prompts, serve, try_prompt
from promptcast.cli.common import settings_from
from promptcast.errors import PromptcastError
from promptcast.providers.registry import installed_providers
from promptcast.settings import SettingsError

COMMANDS = (serve, optimize, try_prompt, models, eval, prompts, db, mcp)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog="promptcast",
        description="Stream an LLM's rewrite of a prompt, through a production-grade SSE relay.",
    )
    parser.add_argument("--version", action="version", version=f"promptcast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (2 for bad settings)."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        # Provider packages load now, so a broken one stops every command at once.
        installed_providers().check(settings)
        status: int = args.run(args, settings)
        return status
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
