"""`PROMPTCAST_DATABASE_URL` as SQLAlchemy needs it: the async driver of each database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

# What a user writes → the async driver we ship (pyproject pins both).
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def engine_url(url: str) -> URL:
    """`sqlite:///path` → aiosqlite, `postgresql://…` → asyncpg; an explicit driver is kept."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def dialect_of(url: str) -> str:
    """'sqlite' or 'postgresql'."""
    return engine_url(url).get_backend_name()


def shown(url: str) -> str:
    """The URL with its password hidden: what messages and logs may show."""
    return engine_url(url).render_as_string(hide_password=True).replace("+aiosqlite", "").replace(
        "+asyncpg", "")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or an in-memory one)."""
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)
