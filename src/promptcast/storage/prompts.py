"""Prompts and their versions: create, list, search, change (If-Match), share.

Versions are numbered per prompt by one `UPDATE … RETURNING` on the prompt's
row: on PostgreSQL the row lock makes concurrent writers (other replicas)
queue, each seeing the number the one before it took; on SQLite every
transaction begins IMMEDIATE, which queues writers too. The unique
(prompt, number) constraint is the backstop.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from promptcast import ids
from promptcast.errors import InvalidField, NotFound, PreconditionFailed
from promptcast.storage import fields as f
from promptcast.storage import pages
from promptcast.storage.database import Database
from promptcast.storage.tables import PromptRow, PromptTagRow, VersionRow, now_us

PREVIEW_CHARS = 160
_INHERITED = ("mode", "model", "opening")


def new_id() -> str:
    """A fresh public id: 16 URL-safe characters (96 random bits)."""
    return base64.urlsafe_b64encode(ids.random_bytes(12)).decode()


@dataclass(frozen=True, slots=True)
class NewVersion:
    text: str
    mode: str | None = None
    model: str | None = None
    opening: str | None = None
    feedback: str | None = None
    parent: int | None = None
    run: str | None = None
    given: frozenset[str] = frozenset()  # which of mode/model/opening the body named


def parse_version(data: dict[str, Any], *, prefix: str = "") -> NewVersion:
    """A version's fields from a body: `text` required, the rest optional."""
    run = data.get("run")
    return NewVersion(
        text=f.text(data, "text", f.TEXT_CHARS, prefix=prefix, required=True) or "",
        mode=f.mode(data, prefix=prefix),
        model=f.text(data, "model", f.MODEL_CHARS, prefix=prefix),
        opening=f.text(data, "opening", f.OPENING_CHARS, prefix=prefix) or None,
        feedback=f.text(data, "feedback", f.FEEDBACK_CHARS, prefix=prefix) or None,
        parent=f.integer(data, "parent", prefix=prefix),
        run=None if run is None else f.public_id(run, f.at(prefix, "run")),
        given=frozenset(name for name in _INHERITED if name in data),
    )


@dataclass(frozen=True, slots=True)
class NewPrompt:
    name: str
    tags: list[str]
    version: NewVersion


def parse_prompt(data: dict[str, Any]) -> NewPrompt:
    """`POST /api/prompts`: {"name", "text", "mode"?, "model"?, "opening"?, "tags"?, …}."""
    name = f.name(data) or ""
    version = parse_version(data)
    if version.parent is not None:
        raise InvalidField("a new prompt's first version has no `parent`", field="parent")
    return NewPrompt(name, f.tags(data) or [], version)


@dataclass(frozen=True, slots=True)
class PromptPatch:
    name: str | None = None
    tags: list[str] | None = None
    current_version: int | None = None


def parse_patch(data: dict[str, Any]) -> PromptPatch:
    """`PATCH /api/prompts/{id}`: any of name, tags, current_version."""
    unknown = set(data) - {"name", "tags", "current_version"}
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidField(f"`{field}` cannot be changed here; a prompt's name, tags and "
                           "current_version can (its text changes by a new version)", field=field)
    return PromptPatch(name=f.name(data, required=False), tags=f.tags(data),
                       current_version=f.integer(data, "current_version"))


def etag(revision: int) -> str:
    """The ETag of a prompt at `revision`."""
    return f'"r{revision}"'


def revision_of(if_match: str | None) -> int | None:
    """The revision an If-Match names (None: no If-Match); a 412 for a tag we never made."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/")
    if len(tag) >= 4 and tag.startswith('"r') and tag.endswith('"') and tag[2:-1].isdigit():
        return int(tag[2:-1])
    raise PreconditionFailed("If-Match must be the ETag a GET of this prompt returned")


def version_json(row: VersionRow) -> dict[str, Any]:
    return {
        "number": row.number,
        "text": row.text,
        "mode": row.mode,
        "model": row.model,
        "opening": row.opening,
        "parent": row.parent,
        "feedback": row.feedback,
        "run": row.run,
        "created_at": f.iso(row.created_at),
    }


def prompt_json(row: PromptRow, tags: list[str], version: VersionRow | None = None,
                *, preview: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "tags": tags,
        "current_version": row.current_version,
        "versions": row.last_number,
        "shared": row.share_token is not None,
        "etag": etag(row.revision),
        "created_at": f.iso(row.created_at),
        "updated_at": f.iso(row.updated_at),
    }
    if version is not None:
        out["version"] = version_json(version)
    if preview is not None:
        out["preview"] = preview
    return out


def _not_found(prompt_id: str) -> NotFound:
    return NotFound(f"no prompt {prompt_id!r}")


class Prompts:
    """The prompts of every owner; each method takes the owner it acts for."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, owner: str, new: NewPrompt) -> dict[str, Any]:
        """A new prompt with its first version (number 1)."""
        now = now_us()
        v = new.version
        async with self.db.session() as s:
            row = PromptRow(id=new_id(), owner=owner, name=new.name, current_version=1,
                            last_number=1, revision=1, created_at=now, updated_at=now)
            s.add(row)
            await s.flush()
            s.add_all(PromptTagRow(prompt_pk=row.pk, tag=tag) for tag in new.tags)
            version = VersionRow(prompt_pk=row.pk, number=1, text=v.text,
                                 mode=v.mode or "optimize", model=v.model, opening=v.opening,
                                 parent=None, feedback=v.feedback, run=v.run, created_at=now)
            s.add(version)
        return prompt_json(row, new.tags, version)

    async def _row(self, s: AsyncSession, owner: str, prompt_id: str) -> PromptRow:
        row = await s.scalar(select(PromptRow).where(PromptRow.owner == owner,
                                                     PromptRow.id == prompt_id))
        if row is None:
            raise _not_found(prompt_id)
        return row

    async def _tags(self, s: AsyncSession, pks: list[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {pk: [] for pk in pks}
        if pks:
            result = await s.execute(select(PromptTagRow.prompt_pk, PromptTagRow.tag)
                                     .where(PromptTagRow.prompt_pk.in_(pks))
                                     .order_by(PromptTagRow.tag))
            for pk, tag in result:
                found[pk].append(tag)
        return found

    async def _version(self, s: AsyncSession, pk: int, number: int) -> VersionRow | None:
        result: VersionRow | None = await s.scalar(
            select(VersionRow).where(VersionRow.prompt_pk == pk, VersionRow.number == number))
        return result

    async def get(self, owner: str, prompt_id: str) -> dict[str, Any]:
        """The prompt with its current version."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            tags = (await self._tags(s, [row.pk]))[row.pk]
            version = await self._version(s, row.pk, row.current_version)
        return prompt_json(row, tags, version)

    async def search(self, owner: str, *, q: str | None = None, tag: str | None = None,
                   limit: int = f.LIST_LIMIT, cursor: str | None = None) -> pages.Page:
        """The owner's prompts, most recently changed first; `q` searches names, tags and texts."""
        query = select(PromptRow).where(PromptRow.owner == owner)
        if tag is not None:
            query = query.where(exists().where(PromptTagRow.prompt_pk == PromptRow.pk,
                                               PromptTagRow.tag == tag))
        if q is not None:
            needle = q.lower()
            query = query.where(or_(
                func.lower(PromptRow.name).contains(needle, autoescape=True),
                exists().where(PromptTagRow.prompt_pk == PromptRow.pk,
                               func.lower(PromptTagRow.tag).contains(needle, autoescape=True)),
                exists().where(VersionRow.prompt_pk == PromptRow.pk,
                               func.lower(VersionRow.text).contains(needle, autoescape=True)),
            ))
        query = pages.after(query, PromptRow.updated_at, PromptRow.pk, cursor, limit)
        async with self.db.session() as s:
            rows = list((await s.scalars(query)).all())
            more = len(rows) > limit
            rows = rows[:limit]
            pks = [row.pk for row in rows]
            tags = await self._tags(s, pks)
            previews: dict[int, str] = {}
            if rows:
                result = await s.execute(
                    select(VersionRow.prompt_pk, func.substr(VersionRow.text, 1, PREVIEW_CHARS))
                    .join(PromptRow, PromptRow.pk == VersionRow.prompt_pk)
                    .where(VersionRow.prompt_pk.in_(pks),
                           VersionRow.number == PromptRow.current_version))
                previews = {pk: text for pk, text in result}
        items = [prompt_json(row, tags[row.pk], preview=previews.get(row.pk, ""))
                 for row in rows]
        last = rows[-1] if more else None
        return pages.Page(items, pages.encode(last.updated_at, last.pk) if last else None)

    async def update(self, owner: str, prompt_id: str, patch: PromptPatch,
                     expected: int | None) -> dict[str, Any]:
        """Change name, tags or current version; `expected`: If-Match's revision (412 if stale)."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            if expected is not None and row.revision != expected:
                raise PreconditionFailed(
                    f"prompt {prompt_id!r} changed since that ETag (now {etag(row.revision)}): "
                    "GET it again")
            values: dict[str, Any] = {"revision": PromptRow.revision + 1,
                                      "updated_at": now_us()}
            if patch.name is not None:
                values["name"] = patch.name
            if patch.current_version is not None:
                if await self._version(s, row.pk, patch.current_version) is None:
                    raise InvalidField(f"prompt {prompt_id!r} has no version "
                                       f"{patch.current_version}", field="current_version")
                values["current_version"] = patch.current_version
            query = update(PromptRow).where(PromptRow.pk == row.pk)
            if expected is not None:
                # Compare-and-set: a writer that got in since our read makes this match nothing.
                query = query.where(PromptRow.revision == expected)
            changed = await s.execute(query.values(**values).returning(PromptRow.revision))
            if changed.first() is None:
                raise PreconditionFailed(f"prompt {prompt_id!r} changed meanwhile: GET it again")
            if patch.tags is not None:
                await s.execute(delete(PromptTagRow).where(PromptTagRow.prompt_pk == row.pk))
                s.add_all(PromptTagRow(prompt_pk=row.pk, tag=tag) for tag in patch.tags)
            await s.refresh(row)
            tags = (await self._tags(s, [row.pk]))[row.pk] if patch.tags is None else patch.tags
            version = await self._version(s, row.pk, row.current_version)
        return prompt_json(row, tags, version)

    async def delete(self, owner: str, prompt_id: str, expected: int | None) -> None:
        """Delete the prompt and its versions (its runs stay)."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            if expected is not None and row.revision != expected:
                raise PreconditionFailed(f"prompt {prompt_id!r} changed since that ETag")
            await s.execute(delete(PromptRow).where(PromptRow.pk == row.pk))

    async def add_version(self, owner: str, prompt_id: str, new: NewVersion) -> dict[str, Any]:
        """A new version, numbered after every other one; it becomes the current version."""
        now = now_us()
        async with self.db.session() as s:
            # Take the number first: the row stays locked (PostgreSQL) until the commit.
            taken = (await s.execute(
                update(PromptRow)
                .where(PromptRow.owner == owner, PromptRow.id == prompt_id)
                .values(last_number=PromptRow.last_number + 1,
                        current_version=PromptRow.last_number + 1,
                        revision=PromptRow.revision + 1, updated_at=now)
                .returning(PromptRow.pk, PromptRow.last_number,
                           PromptRow.current_version))).first()
            if taken is None:
                raise _not_found(prompt_id)
            pk, number, _current = taken
            parent_number = new.parent if new.parent is not None else number - 1
            parent = await self._version(s, pk, parent_number)
            if parent is None:
                raise InvalidField(f"prompt {prompt_id!r} has no version {parent_number}",
                                   field="parent")
            inherited = {name: (getattr(new, name) if name in new.given
                                else getattr(parent, name)) for name in _INHERITED}
            version = VersionRow(prompt_pk=pk, number=number, text=new.text,
                                 mode=inherited["mode"] or "optimize", model=inherited["model"],
                                 opening=inherited["opening"], parent=parent_number,
                                 feedback=new.feedback, run=new.run, created_at=now)
            s.add(version)
        return version_json(version)

    async def versions(self, owner: str, prompt_id: str) -> list[dict[str, Any]]:
        """Every version of the prompt, in order."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            rows = (await s.scalars(select(VersionRow).where(VersionRow.prompt_pk == row.pk)
                                    .order_by(VersionRow.number))).all()
        return [version_json(v) for v in rows]

    async def share(self, owner: str, prompt_id: str) -> str:
        """The prompt's share token, made on the first call (256 random bits)."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            if row.share_token is None:
                row.share_token = secrets.token_urlsafe(32)
            return row.share_token

    async def unshare(self, owner: str, prompt_id: str) -> None:
        """Revoke the share link: its token finds nothing from now on."""
        async with self.db.session() as s:
            row = await self._row(s, owner, prompt_id)
            row.share_token = None

    async def shared(self, token: str) -> dict[str, Any]:
        """What a share link shows: the prompt (no owner, no token) and all its versions."""
        if not 20 <= len(token) <= 64:
            raise NotFound("no shared prompt here: the link is wrong or was revoked")
        async with self.db.session() as s:
            row = await s.scalar(select(PromptRow).where(PromptRow.share_token == token))
            if row is None:
                raise NotFound("no shared prompt here: the link is wrong or was revoked")
            tags = (await self._tags(s, [row.pk]))[row.pk]
            versions = (await s.scalars(select(VersionRow).where(VersionRow.prompt_pk == row.pk)
                                        .order_by(VersionRow.number))).all()
        return {"name": row.name, "tags": tags, "current_version": row.current_version,
                "updated_at": f.iso(row.updated_at),
                "versions": [version_json(v) for v in versions]}
