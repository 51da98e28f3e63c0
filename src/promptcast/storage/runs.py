"""Run records: what every stream asked, how it ended, its text, usage and timings.

They are written by the recorder (recorder.py) in batches, off the streams'
path; a record already there (same owner and id) is left as it is, so a batch
retried after a failure, or an import, never duplicates one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Insert, SQLColumnExpression, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from promptcast.errors import NotFound
from promptcast.storage import fields as f
from promptcast.storage import pages
from promptcast.storage.database import Database
from promptcast.storage.tables import PromptRow, RunRow, VersionRow

KINDS = ("optimize", "chat", "try", "eval")


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
        values = asdict(self)
        del values["extra"]
        return values


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

    async def insert(self, records: list[RunRecord]) -> None:
        """Store `records` in one transaction; those already stored are skipped."""
        if not records:
            return
        async with self.db.session() as s:
            await s.execute(insert_new(self.db.dialect), [r.row() for r in records])

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
        if q is not None:
            dialect = self.db.dialect
            query = query.where(or_(matches(RunRow.text, q, dialect),
                                    matches(RunRow.input, q, dialect)))
        query = pages.after(query, RunRow.created_at, RunRow.pk, cursor, limit)
        async with self.db.session() as s:
            rows = list((await s.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return pages.Page([run_json(r) for r in rows],
                          pages.encode(last.created_at, last.pk) if last else None)

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
