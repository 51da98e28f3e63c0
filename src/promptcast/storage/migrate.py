"""Alembic, run from the package: the migrations ship inside it, so `pip install` users have them.

All pending migrations run in one transaction (PostgreSQL and SQLite both have
transactional DDL): a migration that fails leaves the schema as it was. On
PostgreSQL an advisory lock (env.py) makes replicas that start together take
turns; the second finds the schema current and does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def config(connection: Connection, script_location: Path | None = None) -> Config:
    """An Alembic config that runs on `connection` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, *, script_location: Path | None = None,
                  revision: str = "head") -> None:
    """Apply every migration up to `revision`, in one transaction."""
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.upgrade(config(sync, script_location), revision))


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())
