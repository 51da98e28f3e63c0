"""Run records: what every stream asked, how it ended, its text, usage and timings.

They are written by the recorder (recorder.py) in batches, off the streams'
path; a record already there (same owner and id) is left as it is, so a batch
retried after a failure, or an import, never duplicates one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, SQLColumnExpression, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from promptcast.errors import NotFound
from promptcast.storage import fields as f
from promptcast.storage import pages
from promptcast.storage.database import Database
from promptcast.storage.tables import PromptRow, RunRow, VersionRow

KINDS = ("optimize", "chat", "try", "eval")
# A search looks at this many runs per page at most, newest first: a page answers in
# bounded time however many runs there are (it may hold fewer matches than asked for,
# with a `next_cursor` to look further back).
SEARCH_WINDOW = 1_000


@dataclass(slots=True)
class RunRecord:
    """One finished stream, as stored."""

    id: str
    owner: str
    kind: str
    model: str
    mode: str | None
    request: dict[str, Any]
    input: str
    outcome: str
    text: str
    duration_ms: float
    created_at: int
    template: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    truncated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    ttft_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # not stored: for callers' own use

    def row(self) -> dict[str, Any]:
        """The record as a row (not `asdict`, which deep-copies every value)."""
        return {name: getattr(self, name) for name in _COLUMNS}


_COLUMNS = tuple(f.name for f in fields(RunRecord) if f.name != "extra")


def run_json(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "model": row.model,
        "mode": row.mode,
        "template": row.template,
        "request": row.request,
        "outcome": row.outcome,
        "error": None if row.error_code is None
        else {"code": row.error_code, "message": row.error_message},
        "text": row.text,
        "truncated": row.truncated,
        "usage": {"prompt_tokens": row.prompt_tokens,
                  "completion_tokens": row.completion_tokens},
        "chunks": row.chunks,
        "ttft_ms": row.ttft_ms,
        "duration_ms": row.duration_ms,
        "created_at": f.iso(row.created_at),
    }


def insert_new(dialect: str) -> Insert:
    """INSERT INTO runs … ON CONFLICT (owner, id) DO NOTHING, in `dialect`'s words."""
    if dialect == "postgresql":
        return postgresql.insert(RunRow).on_conflict_do_nothing(
            index_elements=[RunRow.owner, RunRow.id])
    return sqlite.insert(RunRow).on_conflict_do_nothing(index_elements=[RunRow.owner, RunRow.id])


def matches(column: SQLColumnExpression[str], needle: str, dialect: str) -> ColumnElement[bool]:
    """`column` contains `needle`, ignoring case (SQLite's LIKE already ignores ASCII case)."""
    if dialect == "sqlite":
        return column.contains(needle, autoescape=True)
    return column.icontains(needle, autoescape=True)


class Runs:
    """Run records of every owner."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = insert_new(db.dialect)  # built once: its compiled form is cached

    async def insert(self, records: list[RunRecord]) -> None:
        """Store `records` in one transaction; those already stored are skipped."""
        if not records:
            return
        rows = [r.row() for r in records]
        async with self.db.connection() as connection:
            await connection.execute(self._insert, rows)

    async def search(self, owner: str, *, prompt: str | None = None, q: str | None = None,
                   kind: str | None = None, limit: int = f.LIST_LIMIT,
                   cursor: str | None = None) -> pages.Page:
        """The owner's runs, newest first; `prompt` keeps those that wrote one of its versions."""
        query = select(RunRow).where(RunRow.owner == owner)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        if prompt is not None:
            query = query.where(RunRow.id.in_(
                select(VersionRow.run).join(PromptRow, PromptRow.pk == VersionRow.prompt_pk)
                .where(PromptRow.owner == owner, PromptRow.id == prompt,
                       VersionRow.run.is_not(None))))
        if q is None:
            query = pages.after(query, RunRow.created_at, RunRow.pk, cursor, limit)
            async with self.db.session() as s:
                rows = list((await s.scalars(query)).all())
            more = len(rows) > limit
            rows = rows[:limit]
            last = (rows[-1].created_at, rows[-1].pk) if more else None
        else:
            rows, last = await self._search(query, q, limit, cursor)
        return pages.Page([run_json(r) for r in rows],
                          pages.encode(*last) if last is not None else None)

    async def _search(self, query: Select[RunRow], q: str, limit: int, cursor: str | None
                      ) -> tuple[list[RunRow], tuple[int, int] | None]:
        """The matches among the next SEARCH_WINDOW runs, and where the next page starts."""
        window = pages.after(query.with_only_columns(RunRow.pk), RunRow.created_at, RunRow.pk,
                             cursor, SEARCH_WINDOW - 1).subquery()
        dialect = self.db.dialect
        found = (select(RunRow).join(window, RunRow.pk == window.c.pk)
                 .where(or_(matches(RunRow.text, q, dialect), matches(RunRow.input, q, dialect)))
                 .order_by(RunRow.created_at.desc(), RunRow.pk.desc()).limit(limit + 1))
        edge = pages.after(query.with_only_columns(RunRow.created_at, RunRow.pk),
                           RunRow.created_at, RunRow.pk, cursor, 0).offset(SEARCH_WINDOW - 1)
        async with self.db.session() as s:
            rows = list((await s.scalars(found)).all())
            end = (await s.execute(edge)).first()
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, (rows[-1].created_at, rows[-1].pk)
        # Every match of the window is here; the next page looks past the window, if it was full.
        return rows, None if end is None else (end[0], end[1])

    async def get(self, owner: str, run_id: str) -> dict[str, Any]:
        """One run."""
        async with self.db.session() as s:
            row = await s.scalar(select(RunRow).where(RunRow.owner == owner,
                                                      RunRow.id == run_id))
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return run_json(row)

    async def delete(self, owner: str, run_id: str) -> None:
        """Forget one run."""
        async with self.db.session() as s:
            gone = await s.execute(delete(RunRow).where(RunRow.owner == owner,
                                                        RunRow.id == run_id)
                                   .returning(RunRow.pk))
            if gone.first() is None:
                raise NotFound(f"no run {run_id!r}")
