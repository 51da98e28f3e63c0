"""Lists paginated by cursor: newest first, each page's last row the next page's start."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from sqlalchemy import Select, SQLColumnExpression, and_, or_

from promptcast.errors import InvalidField


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, and the cursor of the next (None at the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode(moment: int, pk: int) -> str:
    """The opaque cursor after the row (`moment`, `pk`)."""
    return base64.urlsafe_b64encode(orjson.dumps([moment, pk])).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[int, int] | None:
    """The row a cursor points after; a 422 for one we did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, pk = orjson.loads(raw)
        if not isinstance(moment, int) or not isinstance(pk, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidField("`cursor` is not a cursor this API returned", field="cursor") from None
    return moment, pk


# Any select, whatever its columns.
SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


def after(query: SelectT, moment_col: SQLColumnExpression[int],
          pk_col: SQLColumnExpression[int], cursor: str | None, limit: int) -> SelectT:
    """`query`, newest first, from the row after `cursor`, one row more than `limit`."""
    start = decode(cursor)
    if start is not None:
        moment, pk = start
        query = query.where(or_(moment_col < moment, and_(moment_col == moment, pk_col < pk)))
    return query.order_by(moment_col.desc(), pk_col.desc()).limit(limit + 1)
