"""The library's tables (SQLAlchemy 2 declarative); the migrations create exactly these.

Every object has an `owner` (an API key's name, `key-<digest>` for an unnamed
key, or `local`) and a public `id` unique per owner; lookups always name both,
so another owner's id finds nothing. Times are integers: microseconds since the
epoch, UTC (exact on both databases, and in an export's round trip).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Names for constraints, so a later migration can drop them by name on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON on SQLite (text), JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB(), "postgresql")
# An autoincrementing key on both: BIGINT on PostgreSQL, SQLite's INTEGER rowid.
Key = BigInteger().with_variant(Integer(), "sqlite")


def now_us() -> int:
    """Now, in the tables' unit: microseconds since the epoch."""
    return time.time_ns() // 1000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PromptRow(Base):
    __tablename__ = "prompts"

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    current_version: Mapped[int] = mapped_column(Integer)
    # The highest version number handed out: numbers are never reused.
    last_number: Mapped[int] = mapped_column(Integer)
    # Bumped by every change: the ETag that If-Match compares.
    revision: Mapped[int] = mapped_column(Integer)
    share_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("owner", "id", name="uq_prompts_owner_id"),
        Index("ix_prompts_owner_updated", "owner", "updated_at", "pk"),
    )


class PromptTagRow(Base):
    __tablename__ = "prompt_tags"

    prompt_pk: Mapped[int] = mapped_column(
        ForeignKey("prompts.pk", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True)

    __table_args__ = (Index("ix_prompt_tags_tag", "tag"),)


class VersionRow(Base):
    __tablename__ = "versions"

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    prompt_pk: Mapped[int] = mapped_column(ForeignKey("prompts.pk", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(100))
    opening: Mapped[str | None] = mapped_column(Text)
    parent: Mapped[int | None] = mapped_column(Integer)  # a version number of the same prompt
    feedback: Mapped[str | None] = mapped_column(Text)
    run: Mapped[str | None] = mapped_column(String(64))  # the run that wrote this text
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("prompt_pk", "number", name="uq_versions_prompt_number"),
        Index("ix_versions_run", "run"),
    )


class RunRow(Base):
    __tablename__ = "runs"

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64))  # the stream's id
    owner: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))  # optimize | chat | try | eval
    model: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str | None] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(100))
    request: Mapped[dict[str, Any]] = mapped_column(Json)
    input: Mapped[str] = mapped_column(Text)  # the text it worked on: searched with `text`
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(Boolean)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    duration_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("owner", "id", name="uq_runs_owner_id"),
        Index("ix_runs_owner_created", "owner", "created_at", "pk"),
    )


class TemplateRow(Base):
    __tablename__ = "templates"

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(8))
    mode: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("owner", "name", name="uq_templates_owner_name"),)


class TestSetRow(Base):
    __tablename__ = "testsets"
    __test__ = False  # not a pytest test class, whatever its name

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    cases: Mapped[list[Any]] = mapped_column(Json)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("owner", "id", name="uq_testsets_owner_id"),
        Index("ix_testsets_owner_updated", "owner", "updated_at", "pk"),
    )


class EvaluationRow(Base):
    """One evaluation's results (issue 21): its summary and every cell, as the run reported."""

    __tablename__ = "evaluations"

    pk: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(80))
    testset: Mapped[str | None] = mapped_column(String(32))  # a test set's id, if saved
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(100))
    judge: Mapped[str | None] = mapped_column(String(100))
    summary: Mapped[dict[str, Any]] = mapped_column(Json)
    cells: Mapped[list[Any]] = mapped_column(Json)
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("owner", "id", name="uq_evaluations_owner_id"),
        Index("ix_evaluations_owner_created", "owner", "created_at", "pk"),
    )
