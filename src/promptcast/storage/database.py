"""One database: its async engine, transactions whose failures say what is down, a ping.

    Database(url)
      .session()   one transaction (commit at the end, rollback on error); a lost or
                   refused connection becomes DatabaseUnavailable (503), naming the
                   database without its password
      .ping()      readiness: SELECT 1 within a few seconds
      .upgrade()   the migrations (migrate.py), as at start-up

SQLite gets what makes it a sound shared file: WAL (readers never wait for the
writer), foreign keys on, a busy timeout, and `BEGIN IMMEDIATE` for every
transaction so that two writers queue instead of failing when one upgrades its
read lock; PostgreSQL gets a connection pool that checks connections before use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from promptcast.errors import DatabaseUnavailable
from promptcast.storage import migrate
from promptcast.storage.url import dialect_of, engine_url, shown, sqlite_file

# A transaction waits this long for another writer of a SQLite file.
SQLITE_BUSY_SECONDS = 15.0
CONNECT_TIMEOUT = 5.0
PING_TIMEOUT = 3.0

# What a database that is down, restarting or unreachable raises.
_DOWN = (DBAPIError, OSError, TimeoutError, PoolTimeout, ConnectionError)


class Database:
    """The library's database, opened from `PROMPTCAST_DATABASE_URL`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = dialect_of(url)
        self.shown = shown(url)
        self.engine: AsyncEngine = _engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        """`exc`, raised by the driver, as the error a client gets."""
        detail = type(exc).__name__
        orig = getattr(exc, "orig", None)
        if orig is not None:
            detail = type(orig).__name__
        return DatabaseUnavailable(f"the database {self.shown} is unavailable ({detail})")

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """`session()` for plain Core statements: one transaction, without the ORM."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise  # the caller's to explain (a duplicate, say)
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    async def ping(self) -> None:
        """Return if the database answers a query within PING_TIMEOUT, else DatabaseUnavailable."""
        try:
            async with asyncio.timeout(PING_TIMEOUT), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except IntegrityError as exc:  # cannot happen on SELECT 1; keeps the mapping total
            raise self.unavailable(exc) from exc
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    async def upgrade(self, *, script_location: Path | None = None) -> None:
        """Bring the schema to the newest migration; a failure leaves it as it was."""
        try:
            await migrate.upgrade(self.engine, script_location=script_location)
        except IntegrityError as exc:
            raise self.unavailable(exc) from exc
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    async def revision(self) -> str | None:
        """The schema's migration revision (None before the first)."""
        try:
            return await migrate.current(self.engine)
        except _DOWN as exc:
            raise self.unavailable(exc) from exc

    async def aclose(self) -> None:
        await self.engine.dispose()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns through orjson: a run record's request is serialized once per row.
_JSON: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


def _engine(url: str) -> AsyncEngine:
    target = engine_url(url)
    if dialect_of(url) == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(f"the database {shown(url)} cannot be created: "
                                          f"{exc.strerror} ({path.parent})") from None
        engine = create_async_engine(target, connect_args={"timeout": SQLITE_BUSY_SECONDS},
                                     **_JSON)
        _sqlite_transactions(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if target.get_driver_name() == "asyncpg":
        connect_args = {"timeout": CONNECT_TIMEOUT, "command_timeout": 60}
    return create_async_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=10,
                               pool_timeout=10, connect_args=connect_args, **_JSON)


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """WAL, foreign keys, and transactions we begin ourselves (SQLAlchemy's aiosqlite recipe).

    The sqlite3 module's own transaction handling begins only before DML, so a
    migration's DDL would commit statement by statement; with `BEGIN IMMEDIATE`
    emitted here, a failed migration rolls back whole.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL",
                       f"busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
