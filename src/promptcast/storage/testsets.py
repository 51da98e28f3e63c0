"""Test sets and evaluation results, stored for the evaluation work (issue 21).

A test set is a named list of cases; each case is the JSON object the
evaluation's file format defines (docs/eval.md), kept as it is: this module
only checks that it is an object of bounded size. An evaluation is one run's
summary and cells, as the run reported them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import case as sql_case
from sqlalchemy import delete, or_, select

from promptcast.errors import InvalidField, NotFound, PreconditionFailed
from promptcast.storage import fields as f
from promptcast.storage import pages
from promptcast.storage.database import Database
from promptcast.storage.prompts import new_id
from promptcast.storage.tables import EvaluationRow, TestSetRow, now_us


def cases(data: dict[str, Any], *, prefix: str = "", required: bool = True) -> list[Any] | None:
    """`cases`: a list of at most MAX_CASES objects of at most CASE_CHARS (as JSON) each."""
    field = f.at(prefix, "cases")
    value = data.get("cases")
    if value is None:
        if required:
            raise InvalidField(f"`{field}` is required: a list of case objects", field=field)
        return None
    if not isinstance(value, list):
        raise InvalidField(f"`{field}` must be a list of case objects", field=field)
    if len(value) > f.MAX_CASES:
        raise InvalidField(f"`{field}` has {len(value)} cases; the limit is {f.MAX_CASES}",
                           field=field)
    for i, case in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(case, dict):
            raise InvalidField(f"`{where}` must be an object, such as {{\"message\": \"…\"}}",
                               field=where)
        size = len(orjson.dumps(case))
        if size > f.CASE_CHARS:
            raise InvalidField(f"`{where}` is {size} bytes as JSON; the limit is {f.CASE_CHARS}",
                               field=where)
    return value


@dataclass(frozen=True, slots=True)
class TestSetFields:
    __test__ = False  # not a pytest test class, whatever its name

    name: str | None
    description: str | None
    cases: list[Any] | None


def parse_testset(data: dict[str, Any], *, partial: bool = False) -> TestSetFields:
    """{"name", "description"?, "cases"}; with `partial` (PATCH), any of them."""
    if partial:
        unknown = set(data) - {"name", "description", "cases"}
        if unknown:
            field = sorted(unknown)[0]
            raise InvalidField(f"`{field}` is not a test set field (name, description, cases)",
                               field=field)
    return TestSetFields(name=f.name(data, required=not partial),
                         description=f.text(data, "description", f.FEEDBACK_CHARS),
                         cases=cases(data, required=not partial))


def testset_json(row: TestSetRow, *, with_cases: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "name": row.name, "description": row.description,
                           "count": len(row.cases), "etag": f'"r{row.revision}"',
                           "created_at": f.iso(row.created_at),
                           "updated_at": f.iso(row.updated_at)}
    if with_cases:
        out["cases"] = row.cases
    return out


def evaluation_json(row: EvaluationRow, *, with_cells: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "name": row.name, "testset": row.testset,
                           "model": row.model, "judge": row.judge, "summary": row.summary,
                           "count": len(row.cells), "created_at": f.iso(row.created_at)}
    if with_cells:
        out["cells"] = row.cells
    return out


@dataclass(frozen=True, slots=True)
class EvaluationFields:
    name: str
    testset: str | None
    model: str | None
    judge: str | None
    summary: dict[str, Any]
    cells: list[Any]


def parse_evaluation(data: dict[str, Any]) -> EvaluationFields:
    """{"name", "testset"?, "model"?, "judge"?, "summary": {…}, "cells": [...]}."""
    summary = data.get("summary", {})
    if not isinstance(summary, dict):
        raise InvalidField("`summary` must be an object", field="summary")
    cells = data.get("cells", [])
    if not isinstance(cells, list):
        raise InvalidField("`cells` must be a list", field="cells")
    testset = data.get("testset")
    return EvaluationFields(
        name=f.name(data) or "",
        testset=None if testset is None else f.public_id(testset, "testset"),
        model=f.text(data, "model", f.MODEL_CHARS),
        judge=f.text(data, "judge", f.MODEL_CHARS),
        summary=summary, cells=cells)


class TestSets:
    """Test sets of every owner."""

    __test__ = False

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, owner: str, new: TestSetFields) -> dict[str, Any]:
        now = now_us()
        row = TestSetRow(id=new_id(), owner=owner, name=new.name, description=new.description,
                         cases=new.cases, revision=1, created_at=now, updated_at=now)
        async with self.db.session() as s:
            s.add(row)
        return testset_json(row)

    async def search(self, owner: str, *, limit: int = f.LIST_LIMIT,
                   cursor: str | None = None) -> pages.Page:
        query = pages.after(select(TestSetRow).where(TestSetRow.owner == owner),
                            TestSetRow.updated_at, TestSetRow.pk, cursor, limit)
        async with self.db.session() as s:
            rows = list((await s.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return pages.Page([testset_json(r, with_cases=False) for r in rows],
                          pages.encode(last.updated_at, last.pk) if last else None)

    async def get(self, owner: str, testset_id: str) -> dict[str, Any]:
        async with self.db.session() as s:
            row = await s.scalar(select(TestSetRow).where(TestSetRow.owner == owner,
                                                          TestSetRow.id == testset_id))
        if row is None:
            raise NotFound(f"no test set {testset_id!r}")
        return testset_json(row)

    async def find(self, owner: str, ref: str) -> dict[str, Any]:
        """The owner's test set whose id is `ref`, else the one named `ref`.

        A name that several of the owner's test sets share is a 422 listing their ids:
        which one was meant is not guessed.
        """
        query = (select(TestSetRow).where(TestSetRow.owner == owner,
                                          or_(TestSetRow.id == ref, TestSetRow.name == ref))
                 .order_by(sql_case((TestSetRow.id == ref, 0), else_=1),
                           TestSetRow.updated_at.desc(), TestSetRow.pk.desc()).limit(20))
        async with self.db.session() as s:
            rows = list((await s.scalars(query)).all())
        by_id = [r for r in rows if r.id == ref]
        if by_id:
            return testset_json(by_id[0])
        if not rows:
            raise NotFound(f"no test set named {ref!r} (nor with that id)", field="testset")
        if len(rows) > 1:
            ids = ", ".join(r.id for r in rows)
            raise InvalidField(f"{len(rows)} test sets are named {ref!r}: give one's id "
                               f"({ids})", field="testset")
        return testset_json(rows[0])

    async def update(self, owner: str, testset_id: str, patch: TestSetFields,
                     expected: int | None) -> dict[str, Any]:
        async with self.db.session() as s:
            row = await s.scalar(select(TestSetRow).where(TestSetRow.owner == owner,
                                                          TestSetRow.id == testset_id)
                                 .with_for_update())
            if row is None:
                raise NotFound(f"no test set {testset_id!r}")
            if expected is not None and row.revision != expected:
                raise PreconditionFailed(f"test set {testset_id!r} changed since that ETag")
            if patch.name is not None:
                row.name = patch.name
            if patch.description is not None:
                row.description = patch.description or None
            if patch.cases is not None:
                row.cases = patch.cases
            row.revision += 1
            row.updated_at = now_us()
        return testset_json(row)

    async def delete(self, owner: str, testset_id: str) -> None:
        async with self.db.session() as s:
            gone = await s.execute(delete(TestSetRow).where(TestSetRow.owner == owner,
                                                            TestSetRow.id == testset_id)
                                   .returning(TestSetRow.pk))
            if gone.first() is None:
                raise NotFound(f"no test set {testset_id!r}")


class Evaluations:
    """Evaluation results of every owner."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, owner: str, new: EvaluationFields,
                     evaluation_id: str | None = None) -> dict[str, Any]:
        """Store one evaluation; `evaluation_id` (a run's stream id) instead of a fresh id."""
        row = EvaluationRow(id=evaluation_id or new_id(), owner=owner, testset=new.testset,
                            name=new.name,
                            model=new.model, judge=new.judge, summary=new.summary,
                            cells=new.cells, created_at=now_us())
        async with self.db.session() as s:
            s.add(row)
        return evaluation_json(row)

    async def search(self, owner: str, *, testset: str | None = None, limit: int = f.LIST_LIMIT,
                   cursor: str | None = None) -> pages.Page:
        query = select(EvaluationRow).where(EvaluationRow.owner == owner)
        if testset is not None:
            query = query.where(EvaluationRow.testset == testset)
        query = pages.after(query, EvaluationRow.created_at, EvaluationRow.pk, cursor, limit)
        async with self.db.session() as s:
            rows = list((await s.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return pages.Page([evaluation_json(r, with_cells=False) for r in rows],
                          pages.encode(last.created_at, last.pk) if last else None)

    async def get(self, owner: str, evaluation_id: str) -> dict[str, Any]:
        async with self.db.session() as s:
            row = await s.scalar(select(EvaluationRow).where(EvaluationRow.owner == owner,
                                                             EvaluationRow.id == evaluation_id))
        if row is None:
            raise NotFound(f"no evaluation {evaluation_id!r}")
        return evaluation_json(row)

    async def delete(self, owner: str, evaluation_id: str) -> None:
        async with self.db.session() as s:
            gone = await s.execute(delete(EvaluationRow).where(
                EvaluationRow.owner == owner, EvaluationRow.id == evaluation_id)
                .returning(EvaluationRow.pk))
            if gone.first() is None:
                raise NotFound(f"no evaluation {evaluation_id!r}")
