"""`promptcast db upgrade | current`: the library's database schema (its migrations)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from promptcast.errors import LibraryOff
from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `db` to the command parsers."""
    db = commands.add_parser("db", help="the library's database: migrate it, show its revision")
    db.add_argument("action", choices=["upgrade", "current"],
                    help="upgrade: apply every pending migration (all or none); "
                         "current: print the revision the database is at")
    db.add_argument("--database-url", metavar="URL",
                    help="sqlite:///path or postgresql://… (default: PROMPTCAST_DATABASE_URL, "
                         "else the file in your data directory)")
    db.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Upgrade, or print the revision; 0 on success."""
    if not settings.database_url:
        raise LibraryOff("no database: set PROMPTCAST_DATABASE_URL or pass --database-url")
    return asyncio.run(_run(args.action, settings.database_url))


async def _run(action: str, url: str) -> int:
    from promptcast.storage.database import Database

    db = Database(url)
    try:
        if action == "upgrade":
            before = await db.revision()
            await db.upgrade()
            after = await db.revision()
            print(f"{db.shown}: {before or 'empty'} → {after}" if before != after
                  else f"{db.shown}: at {after}, nothing to do")
        else:
            print(await db.revision() or "empty")
    finally:
        await db.aclose()
    return 0


async def check(settings: Settings) -> None:
    """What `serve` does before it listens: reach the database and migrate it, or raise."""
    if not settings.database_url:
        return
    await _run_quietly(settings.database_url)


async def _run_quietly(url: str) -> None:
    from promptcast.storage.database import Database

    db = Database(url)
    try:
        await db.upgrade()
    finally:
        await db.aclose()
