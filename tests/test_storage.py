"""The storage layer on its own: migrations, the schema, the recorder, the relay's tap, settings."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, inspect, text

from promptcast.errors import DatabaseUnavailable
from promptcast.settings import Settings, SettingsError, read_named_api_keys
from promptcast.storage.database import Database
from promptcast.storage.library import MAX_KEEPING, Library
from promptcast.storage.migrate import MIGRATIONS
from promptcast.storage.recorder import Recorder, deltas_text, frames_text
from promptcast.storage.runs import RunRecord, Runs
from promptcast.storage.tables import Base, now_us
from promptcast.storage.testsets import EvaluationFields
from promptcast.wire import sse

from .upstream_double import chunk_json

pytestmark = pytest.mark.anyio


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(_tables)


async def test_the_migrations_build_exactly_the_tables_the_code_uses(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await db.upgrade()  # a second time: nothing to do
        assert await db.revision() == "0001"

        def diff(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with db.engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await db.aclose()


def _broken_migrations(tmp_path: Path) -> Path:
    """Our migrations, plus a 0002 that creates a table and then fails."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_broken.py").write_text(
        'import sqlalchemy as sa\nfrom alembic import op\n\n'
        'revision = "0002"\ndown_revision = "0001"\nbranch_labels = None\ndepends_on = None\n\n'
        'def upgrade() -> None:\n'
        '    op.create_table("half_done", sa.Column("x", sa.Integer()))\n'
        '    op.add_column("prompts", sa.Column("extra", sa.Integer()))\n'
        '    op.execute("SELECT no_such_function_at_all()")\n\n'
        'def downgrade() -> None:\n    pass\n')
    return scripts


async def test_a_failed_migration_leaves_the_database_as_it_was(
        database_url: str, tmp_path: Path) -> None:
    scripts = _broken_migrations(tmp_path)
    db = Database(database_url)
    try:
        # From empty: 0001 and the broken 0002 in one transaction, so neither stays.
        with pytest.raises(DatabaseUnavailable):
            await db.upgrade(script_location=scripts)
        assert await tables(db) <= {"alembic_version"}
        assert await db.revision() is None
        # From 0001, with data: the failing 0002 changes nothing.
        await db.upgrade()
        async with db.engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO prompts (id, owner, name, current_version, last_number, revision, "
                "created_at, updated_at) VALUES ('p1', 'local', 'kept', 1, 1, 1, 0, 0)"))
        before = await tables(db)
        with pytest.raises(DatabaseUnavailable):
            await db.upgrade(script_location=scripts)
        assert await tables(db) == before and "half_done" not in before
        assert await db.revision() == "0001"
        async with db.engine.connect() as connection:
            columns = await connection.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("prompts")])
            assert "extra" not in columns
            names = (await connection.execute(text("SELECT name FROM prompts"))).scalars().all()
            assert names == ["kept"]
    finally:
        await db.aclose()


# ---------------------------------------------------------------- the recorder


def _frames(*pieces: str, terminal: bytes = b"data: [DONE]\n\n") -> bytes:
    out = b"".join(b"id: s.%d\ndata: %s\n\n" % (i, chunk_json(p).encode())
                   for i, p in enumerate(pieces, 1))
    return out + terminal


def test_frames_become_the_streams_text_and_its_error_message() -> None:
    assert frames_text(_frames("你", "好", "\n世界")) == ("你好\n世界", None)
    error = b'event: error\ndata: {"code":"upstream_error","message":"boom"}\n\n'
    assert frames_text(_frames("half", terminal=error)) == ("half", "boom")
    openai = b'event: error\ndata: {"error":{"message":"quota","code":"x"}}\n\n'
    assert frames_text(_frames(terminal=openai)) == ("", "quota")
    # Usage-only chunks, role-only chunks and heartbeats carry no text.
    assert frames_text(b": keep-alive\n\n" + _frames() + b"data: {\"choices\":[]}\n\n") == (
        "", None)


def test_the_text_is_every_deltas_content_however_it_is_escaped() -> None:
    tricky = ['say "hi"', "back\\slash\\", 'end quote"', "\n line\nbreak", "{json: [1]}",
              '"content":"fake"', "你好", "\u4f60\\", ""]
    frames = _frames(*tricky)
    assert deltas_text(frames) == "".join(tricky)
    # Escapes written by other encoders: \u escapes, escaped slashes.
    raw = (b'data: {"choices":[{"delta":{"content":"\\u4f60\\/\\"x"}}]}\n\n'
           b'data: {"choices":[{"delta":{"reasoning_content":"thinking","content":"!"},'
           b'"logprobs":{"content":[{"token":"a"}]}}]}\n\n')
    assert deltas_text(raw) == '你/"x!'
    # An error frame whose message quotes a chunk is not text.
    error = b'event: error\ndata: {"code":"x","message":"bad \\"content\\":\\"y\\""}\n\n'
    assert frames_text(_frames("ok", terminal=error)) == ("ok", 'bad "content":"y"')


@given(st.lists(st.text(max_size=12), max_size=8))
def test_the_text_is_what_parsing_every_chunk_would_give(pieces: list[str]) -> None:
    # Any text the encoder writes (quotes, backslashes, control characters,
    # surrogate-free unicode): the one-pass search reads what a JSON parse would.
    frames = _frames(*pieces)
    parsed = [orjson.loads(line[6:])["choices"][0]["delta"].get("content", "")
              for line in frames.split(b"\n") if line.startswith(b"data: {")]
    assert deltas_text(frames) == "".join(parsed) == "".join(pieces)


def _record(i: int, owner: str = "local") -> RunRecord:
    return RunRecord(id=f"run{i}", owner=owner, kind="optimize", model="m", mode="optimize",
                     request={"prompt": f"p{i}"}, input=f"p{i}", outcome="done",
                     text=f"t{i}", duration_ms=1.0, created_at=now_us() + i)


async def test_the_recorder_writes_in_batches_and_drops_past_its_bound(tmp_path: Path,
                                                                       caplog: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    runs = Runs(db)
    recorder = Recorder(runs, bound=5, batch=2)
    try:
        for i in range(7):  # the writer is not running yet: 5 wait, 2 are dropped
            recorder.record(_record(i))
        assert (recorder.queued, recorder.dropped) == (5, 2)
        assert "dropped 1 run record(s)" in caplog.text  # one warning, not one per record
        writer = asyncio.get_running_loop().create_task(recorder.run())
        for _ in range(200):
            if recorder.written == 5:
                break
            await asyncio.sleep(0.01)
        assert recorder.written == 5 and recorder.queued == 0
        page = await runs.search("local")
        assert sorted(r["id"] for r in page.items) == [f"run{i}" for i in range(5)]
        recorder.record(_record(0))  # the same run again: kept once
        recorder.record(_record(9))
        for _ in range(200):
            if recorder.written == 7:
                break
            await asyncio.sleep(0.01)
        assert len((await runs.search("local")).items) == 6
        writer.cancel()
    finally:
        await db.aclose()


async def test_evaluations_kept_off_the_callers_path_are_bounded_and_settled_at_close(
        tmp_path: Path, caplog: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'e.db'}")
    await db.upgrade()
    library = Library(db, record_runs=False)
    try:
        fields = EvaluationFields(name="v1 vs v2", testset=None, model="m", judge=None,
                                  summary={"cases": 1}, cells=[{"event": "cell", "case": 0}])
        # None of their tasks has run yet: past the bound, one is dropped at once.
        kept = [library.keep_evaluation("local", fields, f"run{i}")
                for i in range(MAX_KEEPING + 1)]
        assert kept == [True] * MAX_KEEPING + [False]
        assert f"dropped evaluation run{MAX_KEEPING}" in caplog.text
        await library.settle(30)
        page = await library.evaluations.search("local", limit=200)
        assert len(page.items) == MAX_KEEPING
        assert (await library.evaluations.get("local", "run0"))["cells"] == fields.cells
        # The same id again (a retry that had in fact been written) loses that one only.
        assert library.keep_evaluation("local", fields, "run0")
        await library.settle(30)
        assert "dropped evaluation run0: the database refused it" in caplog.text
    finally:
        await db.aclose()


async def test_a_search_page_looks_at_a_bounded_window_and_the_cursor_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptcast.storage import runs as runs_module

    monkeypatch.setattr(runs_module, "SEARCH_WINDOW", 4)
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    await db.upgrade()
    try:
        runs = Runs(db)
        records = [_record(i) for i in range(11)]
        for i in (0, 1, 2, 6, 9, 10):
            records[i].text = f"needle {i}"
        await runs.insert(records)
        seen: list[str] = []
        sizes = []
        cursor = None
        for _ in range(20):
            page = await runs.search("local", q="NEEDLE", limit=2, cursor=cursor)
            seen += [r["id"] for r in page.items]
            sizes.append(len(page.items))
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [f"run{i}" for i in (10, 9, 6, 2, 1, 0)]
        assert 0 in sizes or len(sizes) > 3  # some pages end at the window, not at `limit`
        assert [r["id"] for r in (await runs.search("local", q="needle 6")).items] == []
    finally:
        await db.aclose()


def test_a_streams_text_is_found_in_the_frames_the_reader_got() -> None:
    frames = b"".join(sse.data_frame(b"id: s1.", n, chunk_json(piece).encode())
                      for n, piece in enumerate(("你", "好", "!"), 1))
    assert frames_text(frames + b"id: s1.4\ndata: [DONE]\n\n") == ("你好!", None)


# ---------------------------------------------------------------- settings


def test_the_default_database_is_a_file_in_the_users_data_directory(tmp_path: Path) -> None:
    assert Settings.from_env({"XDG_DATA_HOME": str(tmp_path)}).database_url == \
        f"sqlite:///{tmp_path}/promptcast/promptcast.db"
    assert Settings.from_env({"HOME": str(tmp_path)}).database_url == \
        f"sqlite:///{tmp_path}/.local/share/promptcast/promptcast.db"
    assert Settings.from_env({}).database_url is None
    assert Settings.from_env({"HOME": "/h", "PROMPTCAST_DATABASE_URL": "off"}).database_url \
        is None
    url = "postgresql://u:p@db:5432/lib"
    assert Settings.from_env({"HOME": "/h", "PROMPTCAST_DATABASE_URL": url}).database_url == url
    with pytest.raises(SettingsError, match="PROMPTCAST_DATABASE_URL must be sqlite"):
        Settings.from_env({"PROMPTCAST_DATABASE_URL": "mysql://x/y"})


def test_keys_may_carry_their_owners_names() -> None:
    keys = read_named_api_keys("alice:k-1,k-2,alice:k-3")
    assert [(k.name, k.key) for k in keys] == [("alice", "k-1"), (None, "k-2"), ("alice", "k-3")]
    for bad in ("a b:sekrit", ":sekrit", "key-x:sekrit", "alice:", "alice:sek rit"):
        with pytest.raises(SettingsError) as info:
            read_named_api_keys(bad)
        assert "key 1 in PROMPTCAST_API_KEYS" in str(info.value)
        assert "sekrit" not in str(info.value)
    with pytest.raises(SettingsError, match="listed twice"):
        read_named_api_keys("a:k-1,b:k-1")


async def test_record_json_round_trip_is_exact(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'j.db'}")
    await db.upgrade()
    try:
        record = _record(1)
        record.request = {"prompt": "多字节 ✓", "nested": {"a": [1, 2.5, None]}}
        await Runs(db).insert([record])
        got = (await Runs(db).search("local")).items[0]
        assert orjson.dumps(got["request"]) == orjson.dumps(record.request)
    finally:
        await db.aclose()
