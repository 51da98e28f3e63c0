"""Export everything an owner has as one JSON document; import such a document, all or nothing.

    {"format": "promptcast-library", "version": 1, "exported_at", "owner",
     "prompts": [{…, "versions": [...]}], "templates": [...], "testsets": [...],
     "evaluations": [...], "runs": [...]}

Import checks the whole document first (a 422 names the first bad field by
its path, `prompts[2].versions[0].text`), then writes it in one transaction.
Objects are matched by id (templates by name): one the owner has already is
left as it is, so importing a document twice creates nothing the second time.
Share links are not exported: a link is a capability, not data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from promptcast.errors import Conflict, InvalidField
from promptcast.storage import fields as f
from promptcast.storage.database import Database
from promptcast.storage.prompts import version_json
from promptcast.storage.runs import KINDS, RunRecord, insert_new, run_json
from promptcast.storage.tables import (
    EvaluationRow,
    PromptRow,
    PromptTagRow,
    RunRow,
    TemplateRow,
    TestSetRow,
    VersionRow,
    now_us,
)
from promptcast.storage.templates import parse_template
from promptcast.storage.testsets import cases as parse_cases

FORMAT = "promptcast-library"
VERSION = 1
SECTIONS = ("prompts", "templates", "testsets", "evaluations", "runs")
MAX_VERSIONS = 10_000
OUTCOMES = ("done", "timeout", "error", "cancelled")


@dataclass
class Counts:
    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTIONS, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTIONS, 0))

    def as_json(self) -> dict[str, Any]:
        return {"created": self.created, "skipped": self.skipped}


async def export(db: Database, owner: str, *, runs: bool = True) -> dict[str, Any]:
    """Everything `owner` has, as one document (share links excepted)."""
    async with db.session() as s:
        prompts = (await s.scalars(select(PromptRow).where(PromptRow.owner == owner)
                                   .order_by(PromptRow.created_at, PromptRow.pk))).all()
        pks = [p.pk for p in prompts]
        tags: dict[int, list[str]] = {pk: [] for pk in pks}
        versions: dict[int, list[VersionRow]] = {pk: [] for pk in pks}
        if pks:
            for pk, tag in await s.execute(select(PromptTagRow.prompt_pk, PromptTagRow.tag)
                                           .where(PromptTagRow.prompt_pk.in_(pks))
                                           .order_by(PromptTagRow.tag)):
                tags[pk].append(tag)
            for v in await s.scalars(select(VersionRow).where(VersionRow.prompt_pk.in_(pks))
                                     .order_by(VersionRow.number)):
                versions[v.prompt_pk].append(v)
        templates = (await s.scalars(select(TemplateRow).where(TemplateRow.owner == owner)
                                     .order_by(TemplateRow.name))).all()
        testsets = (await s.scalars(select(TestSetRow).where(TestSetRow.owner == owner)
                                    .order_by(TestSetRow.created_at, TestSetRow.pk))).all()
        evaluations = (await s.scalars(select(EvaluationRow).where(EvaluationRow.owner == owner)
                                       .order_by(EvaluationRow.created_at,
                                                 EvaluationRow.pk))).all()
        run_rows = (await s.scalars(select(RunRow).where(RunRow.owner == owner)
                                    .order_by(RunRow.created_at, RunRow.pk))).all() if runs else []
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": f.iso(now_us()),
        "owner": owner,
        "prompts": [{
            "id": p.id, "name": p.name, "tags": tags[p.pk],
            "current_version": p.current_version, "created_at": f.iso(p.created_at),
            "updated_at": f.iso(p.updated_at),
            "versions": [version_json(v) for v in versions[p.pk]],
        } for p in prompts],
        "templates": [{"name": t.name, "language": t.language, "mode": t.mode, "text": t.text,
                       "created_at": f.iso(t.created_at), "updated_at": f.iso(t.updated_at)}
                      for t in templates],
        "testsets": [{"id": t.id, "name": t.name, "description": t.description,
                      "cases": t.cases, "created_at": f.iso(t.created_at),
                      "updated_at": f.iso(t.updated_at)} for t in testsets],
        "evaluations": [{"id": e.id, "name": e.name, "testset": e.testset, "model": e.model,
                         "judge": e.judge, "summary": e.summary, "cells": e.cells,
                         "created_at": f.iso(e.created_at)} for e in evaluations],
        "runs": [{**run_json(r), "input": r.input} for r in run_rows],
    }


# ---------------------------------------------------------------- import: checks


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(f"`{where}` must be an object", field=where)
    return value


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise InvalidField(f"`{name}` must be a list", field=name)
    return value


def _time(data: dict[str, Any], name: str, where: str, default: int) -> int:
    value = f.timestamp(data, name, prefix=where)
    return default if value is None else value


def _id(data: dict[str, Any], where: str, seen: set[str]) -> str:
    value = f.public_id(data.get("id"), f.at(where, "id"))
    if value in seen:
        raise InvalidField(f"`{f.at(where, 'id')}` {value!r} appears twice in the document",
                           field=f.at(where, "id"))
    seen.add(value)
    return value


@dataclass
class _Prompt:
    row: PromptRow
    tags: list[str]
    versions: list[VersionRow]


def _prompt(data: dict[str, Any], where: str, seen: set[str], owner: str, now: int) -> _Prompt:
    prompt_id = _id(data, where, seen)
    name = f.name(data, prefix=where) or ""
    tags = f.tags(data, prefix=where) or []
    raw_versions = data.get("versions")
    vwhere = f.at(where, "versions")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise InvalidField(f"`{vwhere}` must be a non-empty list", field=vwhere)
    if len(raw_versions) > MAX_VERSIONS:
        raise InvalidField(f"`{vwhere}` has more than {MAX_VERSIONS} versions", field=vwhere)
    versions: list[VersionRow] = []
    numbers: set[int] = set()
    for i, raw in enumerate(raw_versions):
        vw = f"{vwhere}[{i}]"
        v = _object(raw, vw)
        number = f.integer(v, "number", prefix=vw, required=True) or 0
        if number in numbers:
            raise InvalidField(f"`{vw}.number` {number} appears twice", field=f"{vw}.number")
        numbers.add(number)
        run = v.get("run")
        versions.append(VersionRow(
            number=number,
            text=f.text(v, "text", f.TEXT_CHARS, prefix=vw, required=True),
            mode=f.mode(v, prefix=vw, default="optimize"),
            model=f.text(v, "model", f.MODEL_CHARS, prefix=vw),
            opening=f.text(v, "opening", f.OPENING_CHARS, prefix=vw),
            parent=f.integer(v, "parent", prefix=vw),
            feedback=f.text(v, "feedback", f.FEEDBACK_CHARS, prefix=vw),
            run=None if run is None else f.public_id(run, f"{vw}.run"),
            created_at=_time(v, "created_at", vw, now)))
    for i, version in enumerate(versions):
        if version.parent is not None and version.parent not in numbers:
            field = f"{vwhere}[{i}].parent"
            raise InvalidField(f"`{field}`: there is no version {version.parent}", field=field)
    current = f.integer(data, "current_version", prefix=where) or max(numbers)
    if current not in numbers:
        field = f.at(where, "current_version")
        raise InvalidField(f"`{field}`: there is no version {current}", field=field)
    created = _time(data, "created_at", where, now)
    row = PromptRow(id=prompt_id, owner=owner, name=name, current_version=current,
                    last_number=max(numbers), revision=1, share_token=None,
                    created_at=created, updated_at=_time(data, "updated_at", where, created))
    return _Prompt(row, tags, versions)


def _run(data: dict[str, Any], where: str, seen: set[str], owner: str, now: int) -> RunRecord:
    run_id = _id(data, where, seen)
    kind = data.get("kind")
    if kind not in KINDS:
        raise InvalidField(f"`{where}.kind` must be one of {', '.join(KINDS)}",
                           field=f"{where}.kind")
    outcome = data.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidField(f"`{where}.outcome` must be one of {', '.join(OUTCOMES)}",
                           field=f"{where}.outcome")
    request = data.get("request") or {}
    if not isinstance(request, dict):
        raise InvalidField(f"`{where}.request` must be an object", field=f"{where}.request")
    error = data.get("error") or {}
    if not isinstance(error, dict):
        raise InvalidField(f"`{where}.error` must be an object or null", field=f"{where}.error")
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise InvalidField(f"`{where}.usage` must be an object", field=f"{where}.usage")
    ttft = data.get("ttft_ms")
    duration = data.get("duration_ms", 0)
    for name, value in (("ttft_ms", ttft), ("duration_ms", duration)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidField(f"`{where}.{name}` must be a number", field=f"{where}.{name}")
    return RunRecord(
        id=run_id, owner=owner, kind=kind,
        model=f.text(data, "model", f.MODEL_CHARS, prefix=where, required=True) or "",
        mode=f.mode(data, prefix=where),
        template=None if data.get("template") is None
        else f.template_name(data.get("template"), f"{where}.template"),
        request=request,
        input=f.text(data, "input", f.RUN_TEXT_CHARS, prefix=where) or "",
        outcome=outcome,
        error_code=f.text(error, "code", 64, prefix=f"{where}.error"),
        error_message=f.text(error, "message", f.FEEDBACK_CHARS, prefix=f"{where}.error"),
        text=f.text(data, "text", f.RUN_TEXT_CHARS, prefix=where) or "",
        truncated=bool(data.get("truncated", False)),
        prompt_tokens=f.integer(usage, "prompt_tokens", prefix=f"{where}.usage", low=0) or 0,
        completion_tokens=f.integer(usage, "completion_tokens", prefix=f"{where}.usage",
                                    low=0) or 0,
        chunks=f.integer(data, "chunks", prefix=where, low=0) or 0,
        ttft_ms=None if ttft is None else float(ttft),
        duration_ms=float(duration or 0),
        created_at=_time(data, "created_at", where, now),
    )


@dataclass
class _Parsed:
    prompts: list[_Prompt]
    templates: list[TemplateRow]
    testsets: list[TestSetRow]
    evaluations: list[EvaluationRow]
    runs: list[RunRecord]


def check(doc: dict[str, Any], owner: str,
          check_template: Callable[[str, str, str], None] | None = None) -> _Parsed:
    """Every object of `doc`, checked; InvalidField names the first problem."""
    if doc.get("format") != FORMAT:
        raise InvalidField(f"`format` must be {FORMAT!r}: this is not a promptcast export",
                           field="format")
    if doc.get("version") != VERSION:
        raise InvalidField(f"`version` must be {VERSION}, the only version this promptcast "
                           "reads", field="version")
    unknown = set(doc) - {"format", "version", "exported_at", "owner", *SECTIONS}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidField(f"`{name}` is not part of a library export", field=name)
    now = now_us()
    seen: set[str] = set()
    prompts = [_prompt(_object(p, f"prompts[{i}]"), f"prompts[{i}]", seen, owner, now)
               for i, p in enumerate(_list(doc, "prompts"))]
    templates: list[TemplateRow] = []
    names: set[str] = set()
    for i, raw in enumerate(_list(doc, "templates")):
        where = f"templates[{i}]"
        data = _object(raw, where)
        t = parse_template({k: v for k, v in data.items() if k not in ("created_at",
                                                                      "updated_at")},
                           prefix=where)
        assert t.name and t.language and t.mode and t.text is not None
        if t.name in names:
            raise InvalidField(f"`{where}.name` {t.name!r} appears twice", field=f"{where}.name")
        names.add(t.name)
        if check_template is not None:
            check_template(t.name, t.text, where)
        created = _time(data, "created_at", where, now)
        templates.append(TemplateRow(owner=owner, name=t.name, language=t.language,
                                     mode=t.mode, text=t.text, revision=1, created_at=created,
                                     updated_at=_time(data, "updated_at", where, created)))
    testsets: list[TestSetRow] = []
    seen = set()
    for i, raw in enumerate(_list(doc, "testsets")):
        where = f"testsets[{i}]"
        data = _object(raw, where)
        created = _time(data, "created_at", where, now)
        testsets.append(TestSetRow(
            id=_id(data, where, seen), owner=owner, name=f.name(data, prefix=where),
            description=f.text(data, "description", f.FEEDBACK_CHARS, prefix=where),
            cases=parse_cases(data, prefix=where), revision=1, created_at=created,
            updated_at=_time(data, "updated_at", where, created)))
    evaluations: list[EvaluationRow] = []
    seen = set()
    for i, raw in enumerate(_list(doc, "evaluations")):
        where = f"evaluations[{i}]"
        data = _object(raw, where)
        summary = data.get("summary", {})
        cells = data.get("cells", [])
        if not isinstance(summary, dict) or not isinstance(cells, list):
            raise InvalidField(f"`{where}`: summary must be an object and cells a list",
                               field=f"{where}.summary")
        testset = data.get("testset")
        evaluations.append(EvaluationRow(
            id=_id(data, where, seen), owner=owner, name=f.name(data, prefix=where),
            testset=None if testset is None else f.public_id(testset, f"{where}.testset"),
            model=f.text(data, "model", f.MODEL_CHARS, prefix=where),
            judge=f.text(data, "judge", f.MODEL_CHARS, prefix=where),
            summary=summary, cells=cells, created_at=_time(data, "created_at", where, now)))
    seen = set()
    runs = [_run(_object(r, f"runs[{i}]"), f"runs[{i}]", seen, owner, now)
            for i, r in enumerate(_list(doc, "runs"))]
    return _Parsed(prompts, templates, testsets, evaluations, runs)


# ---------------------------------------------------------------- import: writes


async def import_document(db: Database, owner: str, doc: dict[str, Any],
                          check_template: Callable[[str, str, str], None] | None = None
                          ) -> Counts:
    """Write what `doc` has that `owner` has not, in one transaction; counts of each."""
    parsed = check(doc, owner, check_template)
    counts = Counts()
    try:
        async with db.session() as s:
            have = set((await s.scalars(select(PromptRow.id).where(
                PromptRow.owner == owner,
                PromptRow.id.in_([p.row.id for p in parsed.prompts])))).all()) \
                if parsed.prompts else set()
            for p in parsed.prompts:
                if p.row.id in have:
                    counts.skipped["prompts"] += 1
                    continue
                s.add(p.row)
                await s.flush()
                s.add_all(PromptTagRow(prompt_pk=p.row.pk, tag=tag) for tag in p.tags)
                for v in p.versions:
                    v.prompt_pk = p.row.pk
                s.add_all(p.versions)
                counts.created["prompts"] += 1
            have = set((await s.scalars(select(TemplateRow.name).where(
                TemplateRow.owner == owner))).all())
            for t in parsed.templates:
                if t.name not in have:
                    s.add(t)
                    counts.created["templates"] += 1
                else:
                    counts.skipped["templates"] += 1
            for section, model, rows in (("testsets", TestSetRow, parsed.testsets),
                                         ("evaluations", EvaluationRow, parsed.evaluations)):
                ids = [r.id for r in rows]
                have = set(await s.scalars(select(model.id).where(
                    model.owner == owner, model.id.in_(ids)))) if ids else set()
                for r in rows:
                    if r.id in have:
                        counts.skipped[section] += 1
                    else:
                        s.add(r)
                        counts.created[section] += 1
            if parsed.runs:
                have = set()
                ids = [r.id for r in parsed.runs]
                for start in range(0, len(ids), 500):
                    have |= set((await s.scalars(select(RunRow.id).where(
                        RunRow.owner == owner, RunRow.id.in_(ids[start:start + 500]))
                    )).all())
                fresh = [r for r in parsed.runs if r.id not in have]
                counts.created["runs"] = len(fresh)
                counts.skipped["runs"] = len(parsed.runs) - len(fresh)
                for start in range(0, len(fresh), 500):
                    await s.execute(insert_new(db.dialect),
                                    [r.row() for r in fresh[start:start + 500]])
    except IntegrityError:
        raise Conflict("the same objects were being written at the same time: "
                       "import the document again") from None
    return counts
