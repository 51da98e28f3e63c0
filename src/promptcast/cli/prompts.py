"""`promptcast prompts list | show | save | export | import`: the library from the terminal.

On this machine's database (`PROMPTCAST_DATABASE_URL`, as the local owner or
`--owner`), or through a running promptcast with `--server URL [--api-key KEY]`,
as the owner that key stands for.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from promptcast.errors import LibraryOff, PromptcastError
from promptcast.settings import Settings


def register(commands: Any) -> None:
    """Add `prompts` to the command parsers."""
    prompts = commands.add_parser("prompts", help="the prompt library: list, show, save, "
                                                  "export, import")
    actions = prompts.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help)
        where = parser.add_argument_group("which library")
        where.add_argument("--server", metavar="URL",
                           help="a running promptcast (default: this machine's database)")
        where.add_argument("--api-key", metavar="KEY", help="the server's API key")
        where.add_argument("--database-url", metavar="URL",
                           help="sqlite:///path or postgresql://… (without --server)")
        where.add_argument("--owner", default="local",
                           help="whose prompts, without --server (default: local)")
        parser.set_defaults(run=run)
        return parser

    listing = action("list", "list prompts, most recently changed first")
    listing.add_argument("-q", "--query", help="search names, tags and texts")
    listing.add_argument("--tag", help="only prompts with this tag")
    listing.add_argument("--limit", type=int, default=50, help="how many (at most 200)")
    listing.add_argument("--json", action="store_true", help="print the JSON page")
    show = action("show", "print a prompt's text (the current version, or --version N)")
    show.add_argument("id", help="the prompt's id")
    show.add_argument("--version", type=int, metavar="N", help="this version's text")
    show.add_argument("--json", action="store_true", help="print the prompt and its versions")
    save = action("save", "save a text as a new prompt, or as a new version of one (--to)")
    save.add_argument("file", help="the text's file ('-' reads standard input)")
    save.add_argument("--name", help="the new prompt's name (default: the file's name)")
    save.add_argument("--to", metavar="ID", help="add a version to this prompt instead")
    save.add_argument("--mode", choices=["optimize", "expand", "shorten"])
    save.add_argument("--model")
    save.add_argument("--opening")
    save.add_argument("--feedback", help="what this version answers (with --to)")
    save.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    export = action("export", "write everything you own as one JSON document")
    export.add_argument("-o", "--output", type=Path, help="the file (default: standard output)")
    export.add_argument("--no-runs", action="store_true", help="leave the run records out")
    imported = action("import", "import an export document (idempotent, all or nothing)")
    imported.add_argument("file", help="the document ('-' reads standard input)")


class Library(Protocol):
    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> Any: ...

    async def aclose(self) -> None: ...


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Do the action; 0 when done."""
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    library: Library = (Remote(args.server, args.api_key) if args.server
                        else await Direct.open(settings, args.owner))
    try:
        return await ACTIONS[args.action](library, args)
    finally:
        await library.aclose()


def _read(name: str) -> str:
    return sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")


async def _list(library: Library, args: argparse.Namespace) -> int:
    page = await library.call("GET", "/api/prompts", params={
        "q": args.query, "tag": args.tag, "limit": args.limit})
    if args.json:
        sys.stdout.write(orjson.dumps(page, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for item in page["items"]:
        tags = f"  [{', '.join(item['tags'])}]" if item["tags"] else ""
        print(f"{item['id']}  v{item['current_version']}/{item['versions']}  "
              f"{item['updated_at'][:16].replace('T', ' ')}  {item['name']}{tags}")
    if not page["items"]:
        print("no prompts", file=sys.stderr)
    return 0


async def _show(library: Library, args: argparse.Namespace) -> int:
    prompt = await library.call("GET", f"/api/prompts/{args.id}")
    versions = (await library.call("GET", f"/api/prompts/{args.id}/versions"))["items"]
    if args.json:
        out = {**prompt, "versions": versions}
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    wanted = args.version or prompt["current_version"]
    chosen = next((v for v in versions if v["number"] == wanted), None)
    if chosen is None:
        print(f"promptcast: prompt {args.id!r} has no version {wanted}", file=sys.stderr)
        return 1
    sys.stdout.write(chosen["text"] + ("" if chosen["text"].endswith("\n") else "\n"))
    return 0


async def _save(library: Library, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"text": _read(args.file)}
    for name in ("mode", "model", "opening"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.to:
        if args.feedback:
            body["feedback"] = args.feedback
        version = await library.call("POST", f"/api/prompts/{args.to}/versions", body)
        print(f"{args.to} v{version['number']}")
        return 0
    body["name"] = args.name or (Path(args.file).stem if args.file != "-" else "untitled")
    if args.tag:
        body["tags"] = args.tag
    prompt = await library.call("POST", "/api/prompts", body)
    print(f"{prompt['id']} v1")
    return 0


async def _export(library: Library, args: argparse.Namespace) -> int:
    document = await library.call("GET", "/api/export",
                                  params={"runs": "0" if args.no_runs else "1"})
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if args.output:
        args.output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


async def _import(library: Library, args: argparse.Namespace) -> int:
    try:
        document = orjson.loads(_read(args.file))
    except orjson.JSONDecodeError as exc:
        print(f"promptcast: {args.file}: not JSON: {exc}", file=sys.stderr)
        return 1
    counts = await library.call("POST", "/api/import", document)
    created = ", ".join(f"{n} {k}" for k, n in counts["created"].items() if n) or "nothing"
    skipped = sum(counts["skipped"].values())
    print(f"imported: {created}" + (f" ({skipped} already there)" if skipped else ""))
    return 0


ACTIONS = {"list": _list, "show": _show, "save": _save, "export": _export, "import": _import}


class Remote:
    """The library of a running promptcast, through its HTTP API."""

    def __init__(self, server: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=server.rstrip("/"), headers=headers,
                                         timeout=60, trust_env=False)

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        response = await self._client.request(
            method, path, json=body,
            params={k: v for k, v in (params or {}).items() if v is not None})
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise _Failed(f"{response.status_code}: {error['message']}", error.get("field"))
            except (ValueError, KeyError, TypeError):
                raise _Failed(f"{response.status_code}: {response.text[:200]}", None) from None
        return response.json() if response.content else None

    async def aclose(self) -> None:
        await self._client.aclose()


class _Failed(PromptcastError):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)


class Direct:
    """This machine's library database, reached without a server."""

    def __init__(self, library: Any, db: Any, owner: str) -> None:
        self._library = library
        self._db = db
        self._owner = owner

    @classmethod
    async def open(cls, settings: Settings, owner: str) -> Direct:
        from promptcast.storage.database import Database
        from promptcast.storage.library import Library as Store

        if not settings.database_url:
            raise LibraryOff("no database: set PROMPTCAST_DATABASE_URL or pass --database-url")
        db = Database(settings.database_url)
        try:
            await db.upgrade()
        except BaseException:
            await db.aclose()
            raise
        return cls(Store(db, record_runs=False), db, owner)

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        from promptcast.storage import fields as f
        from promptcast.storage.prompts import parse_prompt, parse_version

        lib, owner, params = self._library, self._owner, params or {}
        parts = path.strip("/").split("/")[1:]  # after "api"
        if (method, parts) == ("GET", ["prompts"]):
            page = await lib.prompts.search(owner, q=params.get("q"), tag=params.get("tag"),
                                            limit=f.limit_of(str(params.get("limit") or "")))
            return page.as_json()
        if method == "GET" and len(parts) == 2 and parts[0] == "prompts":
            return await lib.prompts.get(owner, parts[1])
        if method == "GET" and parts[2:] == ["versions"]:
            return {"items": await lib.prompts.versions(owner, parts[1])}
        if (method, parts) == ("POST", ["prompts"]):
            return await lib.prompts.create(owner, parse_prompt(body))
        if method == "POST" and parts[2:] == ["versions"]:
            return await lib.prompts.add_version(owner, parts[1], parse_version(body))
        if (method, parts) == ("GET", ["export"]):
            return await lib.export(owner, runs=params.get("runs") != "0")
        if (method, parts) == ("POST", ["import"]):
            if not isinstance(body, dict):
                raise _Failed("the document must be a JSON object", None)
            return (await lib.import_document(owner, body)).as_json()
        raise AssertionError(f"no such call: {method} {path}")

    async def aclose(self) -> None:
        await self._db.aclose()
