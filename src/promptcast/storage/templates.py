"""An owner's own meta-prompt templates (the built-ins live in code: service/templates.py).

This module stores and finds them; whether a text is a usable template (its
slots) is the service's to say, before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from promptcast.errors import Conflict, InvalidField, NotFound, PreconditionFailed
from promptcast.storage import fields as f
from promptcast.storage.database import Database
from promptcast.storage.tables import TemplateRow, now_us

_LANGUAGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True, slots=True)
class TemplateFields:
    name: str | None
    language: str | None
    mode: str | None
    text: str | None


def language(data: dict[str, Any], *, prefix: str = "", required: bool = False) -> str | None:
    """A language tag such as `en`, `zh` or `zh-Hant`."""
    field = f.at(prefix, "language")
    value = data.get("language")
    if value is None:
        if required:
            raise InvalidField(f"`{field}` is required: `en`, `zh`, …", field=field)
        return None
    if not isinstance(value, str) or not 2 <= len(value) <= 16 or not set(value) <= _LANGUAGE_CHARS:
        raise InvalidField(f"`{field}` must be a language tag such as en, zh or zh-Hant",
                           field=field)
    return value


def parse_template(data: dict[str, Any], *, prefix: str = "",
                   partial: bool = False) -> TemplateFields:
    """A template body: {"name", "language", "mode", "text"}; with `partial`, any of them."""
    if partial:
        unknown = set(data) - {"name", "language", "mode", "text"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidField(f"`{field}` is not a template field (name, language, mode, text)",
                               field=field)
    name = data.get("name")
    return TemplateFields(
        name=None if name is None and partial else f.template_name(name, f.at(prefix, "name")),
        language=language(data, prefix=prefix, required=not partial),
        mode=f.mode(data, prefix=prefix, default=None if partial else "optimize"),
        text=f.text(data, "text", f.TEXT_CHARS, prefix=prefix, required=not partial),
    )


def template_json(row: TemplateRow) -> dict[str, Any]:
    return {"name": row.name, "language": row.language, "mode": row.mode, "text": row.text,
            "builtin": False, "etag": f'"r{row.revision}"', "created_at": f.iso(row.created_at),
            "updated_at": f.iso(row.updated_at)}


def _taken(name: str) -> Conflict:
    return Conflict(f"a template named {name!r} exists already", field="name")


class Templates:
    """Templates of every owner, by name."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self, owner: str) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(TemplateRow).where(TemplateRow.owner == owner)
                                    .order_by(TemplateRow.name))).all()
        return [template_json(r) for r in rows]

    async def find(self, owner: str, name: str) -> dict[str, Any] | None:
        """The owner's template `name`, or None."""
        async with self.db.session() as s:
            row = await s.scalar(select(TemplateRow).where(TemplateRow.owner == owner,
                                                           TemplateRow.name == name))
        return None if row is None else template_json(row)

    async def create(self, owner: str, new: TemplateFields) -> dict[str, Any]:
        assert new.name and new.language and new.mode and new.text is not None
        now = now_us()
        row = TemplateRow(owner=owner, name=new.name, language=new.language, mode=new.mode,
                          text=new.text, revision=1, created_at=now, updated_at=now)
        try:
            async with self.db.session() as s:
                s.add(row)
        except IntegrityError:
            raise _taken(new.name) from None
        return template_json(row)

    async def update(self, owner: str, name: str, patch: TemplateFields,
                     expected: int | None) -> dict[str, Any]:
        try:
            async with self.db.session() as s:
                row = await s.scalar(select(TemplateRow).where(TemplateRow.owner == owner,
                                                               TemplateRow.name == name)
                                     .with_for_update())
                if row is None:
                    raise NotFound(f"no template {name!r}")
                if expected is not None and row.revision != expected:
                    raise PreconditionFailed(f"template {name!r} changed since that ETag")
                for attr in ("name", "language", "mode", "text"):
                    value = getattr(patch, attr)
                    if value is not None:
                        setattr(row, attr, value)
                row.revision += 1
                row.updated_at = now_us()
        except IntegrityError:
            raise _taken(patch.name or name) from None
        return template_json(row)

    async def delete(self, owner: str, name: str) -> None:
        async with self.db.session() as s:
            gone = await s.execute(delete(TemplateRow).where(TemplateRow.owner == owner,
                                                             TemplateRow.name == name)
                                   .returning(TemplateRow.pk))
            if gone.first() is None:
                raise NotFound(f"no template {name!r}")
