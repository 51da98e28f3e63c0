"""The library's limits, and the checks every body and imported document goes through.

Each check raises `InvalidField` (422) naming the field by its path in the
body (`tags[2]`, `prompts[0].versions[3].text`) and what is allowed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from promptcast.errors import InvalidField

# The documented limits (README, "The library").
NAME_CHARS = 200
TAG_CHARS = 50
MAX_TAGS = 20
TEXT_CHARS = 100_000          # a version's text, a template's text
OPENING_CHARS = 10_000
FEEDBACK_CHARS = 10_000
MODEL_CHARS = 100
MODES = ("optimize", "expand", "shorten")
TEMPLATE_NAME_CHARS = 100
MAX_CASES = 1_000
CASE_CHARS = 20_000           # one test case, as JSON
LIST_LIMIT = 50               # a page of a list, by default
MAX_LIST_LIMIT = 200          # and at most
QUERY_CHARS = 200             # a search's `q`
RUN_TEXT_CHARS = 200_000      # a run's recorded text; the rest is cut (`truncated`)
LIBRARY_BODY_BYTES = 1024 * 1024  # a library request's body (import has its own limit)

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_TEMPLATE_NAME_CHARS = _ID_CHARS | {"."}


def at(prefix: str, name: str) -> str:
    """The path of field `name` inside `prefix` (`prompts[0]` + `name` → `prompts[0].name`)."""
    return f"{prefix}.{name}" if prefix else name


def text(data: dict[str, Any], name: str, limit: int, *, prefix: str = "",
         required: bool = False, strip: bool = False) -> str | None:
    """A string field of at most `limit` characters (None when absent or null)."""
    field = at(prefix, name)
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidField(f"`{field}` is required", field=field)
        return None
    if not isinstance(value, str):
        raise InvalidField(f"`{field}` must be a string", field=field)
    if strip:
        value = value.strip()
    if required and not value.strip():
        raise InvalidField(f"`{field}` is empty", field=field)
    if len(value) > limit:
        raise InvalidField(f"`{field}` is {len(value)} characters; the limit is {limit}",
                           field=field)
    if "\x00" in value:
        raise InvalidField(f"`{field}` holds a NUL character", field=field)
    return value


def name(data: dict[str, Any], *, prefix: str = "", required: bool = True) -> str | None:
    """An object's name: 1 to NAME_CHARS characters, trimmed, one line."""
    value = text(data, "name", NAME_CHARS, prefix=prefix, required=required, strip=True)
    if value is not None and ("\n" in value or "\r" in value):
        field = at(prefix, "name")
        raise InvalidField(f"`{field}` must be one line", field=field)
    return value


def tags(data: dict[str, Any], *, prefix: str = "") -> list[str] | None:
    """A list of at most MAX_TAGS distinct tags of 1 to TAG_CHARS characters (None if absent)."""
    field = at(prefix, "tags")
    value = data.get("tags")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidField(f"`{field}` must be a list of strings", field=field)
    if len(value) > MAX_TAGS:
        raise InvalidField(f"`{field}` has {len(value)} tags; the limit is {MAX_TAGS}",
                           field=field)
    out: list[str] = []
    for i, tag in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidField(f"`{where}` must be a non-empty string", field=where)
        tag = tag.strip()
        if len(tag) > TAG_CHARS:
            raise InvalidField(f"`{where}` is {len(tag)} characters; the limit is {TAG_CHARS}",
                               field=where)
        if not tag.isprintable():
            raise InvalidField(f"`{where}` holds a control character", field=where)
        if tag not in out:
            out.append(tag)
    return out


def mode(data: dict[str, Any], *, prefix: str = "", default: str | None = None) -> str | None:
    """One of MODES (the Chinese names are accepted too)."""
    field = at(prefix, "mode")
    value = data.get("mode", default)
    if value is None:
        return None
    aliases = {"优化": "optimize", "扩写": "expand", "缩写": "shorten"}
    value = aliases.get(value, value) if isinstance(value, str) else value
    if value not in MODES:
        raise InvalidField(f"`{field}` must be one of {', '.join(MODES)}, not {value!r}",
                           field=field)
    return str(value)


def integer(data: dict[str, Any], name: str, *, prefix: str = "", low: int = 1,
            high: int = 2**31 - 1, required: bool = False) -> int | None:
    """A whole number from `low` to `high`."""
    field = at(prefix, name)
    value = data.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None:
        if required:
            raise InvalidField(f"`{field}` is required", field=field)
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidField(f"`{field}` must be a whole number from {low} to {high}",
                           field=field)
    return value


def public_id(value: Any, field: str) -> str:
    """An object's id as sent back to us: 1 to 64 URL-safe characters."""
    if (not isinstance(value, str) or not 1 <= len(value) <= 64
            or not set(value) <= _ID_CHARS):
        raise InvalidField(f"`{field}` must be an id of 1 to 64 letters, digits, '-' or '_'",
                           field=field)
    return value


def template_name(value: Any, field: str = "name") -> str:
    """A template's name: 1 to 100 letters, digits, '.', '-' or '_' (it goes in URLs)."""
    if (not isinstance(value, str) or not 1 <= len(value) <= TEMPLATE_NAME_CHARS
            or not set(value) <= _TEMPLATE_NAME_CHARS):
        raise InvalidField(
            f"`{field}` must be 1 to {TEMPLATE_NAME_CHARS} letters, digits, '.', '-' or '_'",
            field=field)
    return value


def limit_of(raw: str | None) -> int:
    """A list's `limit` query parameter: 1 to MAX_LIST_LIMIT, LIST_LIMIT when absent."""
    if raw is None or raw == "":
        return LIST_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise InvalidField(f"`limit` must be a whole number from 1 to {MAX_LIST_LIMIT}",
                           field="limit")
    return int(raw)


def query_of(raw: str | None, name: str = "q") -> str | None:
    """A search string: at most QUERY_CHARS characters; None when empty."""
    if raw is None or not raw.strip():
        return None
    if len(raw) > QUERY_CHARS:
        raise InvalidField(f"`{name}` is {len(raw)} characters; the limit is {QUERY_CHARS}",
                           field=name)
    return raw.strip()


def iso(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC, exact to the microsecond."""
    moment = dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).replace(microsecond=us % 1_000_000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def timestamp(data: dict[str, Any], name: str, *, prefix: str = "") -> int | None:
    """An ISO 8601 time with its zone (as exported) → microseconds since the epoch."""
    field = at(prefix, name)
    value = data.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError
    except ValueError:
        raise InvalidField(f"`{field}` must be an ISO 8601 time with its zone, such as "
                           "2026-12-08T10:00:00.000000Z", field=field) from None
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
