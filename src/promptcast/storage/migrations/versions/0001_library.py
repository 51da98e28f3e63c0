"""The library: prompts, versions, tags, runs, templates, test sets, evaluations.

Revision ID: 0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _key() -> sa.Column[int]:
    return sa.Column("pk", _KEY, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "prompts",
        _key(),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("share_token", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_prompts"),
        sa.UniqueConstraint("owner", "id", name="uq_prompts_owner_id"),
        sa.UniqueConstraint("share_token", name="uq_prompts_share_token"),
    )
    op.create_index("ix_prompts_owner_updated", "prompts", ["owner", "updated_at", "pk"])
    op.create_table(
        "prompt_tags",
        sa.Column("prompt_pk", _KEY, nullable=False),
        sa.Column("tag", sa.String(50), nullable=False),
        sa.ForeignKeyConstraint(["prompt_pk"], ["prompts.pk"], ondelete="CASCADE",
                                name="fk_prompt_tags_prompt_pk_prompts"),
        sa.PrimaryKeyConstraint("prompt_pk", "tag", name="pk_prompt_tags"),
    )
    op.create_index("ix_prompt_tags_tag", "prompt_tags", ["tag"])
    op.create_table(
        "versions",
        _key(),
        sa.Column("prompt_pk", _KEY, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("opening", sa.Text(), nullable=True),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("run", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["prompt_pk"], ["prompts.pk"], ondelete="CASCADE",
                                name="fk_versions_prompt_pk_prompts"),
        sa.PrimaryKeyConstraint("pk", name="pk_versions"),
        sa.UniqueConstraint("prompt_pk", "number", name="uq_versions_prompt_number"),
    )
    op.create_index("ix_versions_run", "versions", ["run"])
    op.create_table(
        "runs",
        _key(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("template", sa.String(100), nullable=True),
        sa.Column("request", _JSON, nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_runs"),
        sa.UniqueConstraint("owner", "id", name="uq_runs_owner_id"),
    )
    op.create_index("ix_runs_owner_created", "runs", ["owner", "created_at", "pk"])
    op.create_table(
        "templates",
        _key(),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_templates"),
        sa.UniqueConstraint("owner", "name", name="uq_templates_owner_name"),
    )
    op.create_table(
        "testsets",
        _key(),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("cases", _JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_testsets"),
        sa.UniqueConstraint("owner", "id", name="uq_testsets_owner_id"),
    )
    op.create_index("ix_testsets_owner_updated", "testsets", ["owner", "updated_at", "pk"])
    op.create_table(
        "evaluations",
        _key(),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("testset", sa.String(32), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("judge", sa.String(100), nullable=True),
        sa.Column("summary", _JSON, nullable=False),
        sa.Column("cells", _JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_evaluations"),
        sa.UniqueConstraint("owner", "id", name="uq_evaluations_owner_id"),
    )
    op.create_index("ix_evaluations_owner_created", "evaluations",
                    ["owner", "created_at", "pk"])


def downgrade() -> None:
    for table in ("evaluations", "testsets", "templates", "runs", "versions", "prompt_tags",
                  "prompts"):
        op.drop_table(table)
