"""Alembic's environment: runs on the connection `migrate.upgrade` hands it, never on its own."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from promptcast.storage.tables import Base

# Any fixed number: the key of the lock replicas take turns on while migrating.
_LOCK_KEY = 7_243_520_160


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it; Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError("promptcast's migrations run with `promptcast db upgrade`, or at start-up")
_run(_connection)
