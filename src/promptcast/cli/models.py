"""`promptcast models`: the configured models and whether each is usable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `models` to the command parsers."""
    models = commands.add_parser("models", help="list the configured models and their status")
    models.add_argument("--models", type=Path, metavar="FILE", help="TOML file of extra models")
    models.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the model table."""
    list_models(settings, sys.stdout)
    return 0


def list_models(settings: Settings, out: TextIO) -> None:
    """One line a model: name, provider, status (and which is the default)."""
    rows = [("MODEL", "PROVIDER", "STATUS")]
    for spec in settings.models:
        status = "ok" if spec.available else f"unavailable: {spec.unavailable_reason}"
        if spec.name == settings.models.default:
            status += " (default)"
        rows.append((spec.name, spec.provider, status))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, provider, status in rows:
        out.write(f"{name:<{width[0]}}  {provider:<{width[1]}}  {status}\n")
