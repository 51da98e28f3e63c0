"""`promptcast db` and `promptcast prompts`, as a person runs them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import RunningServer


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTCAST_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "promptcast", *args], env=full, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_db_upgrade_migrates_once_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'lib.db'}"
    first = run("db", "upgrade", "--database-url", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("empty → 0001")
    again = run("db", "upgrade", "--database-url", url)
    assert "at 0001, nothing to do" in again.stdout
    assert run("db", "current", env={"PROMPTCAST_DATABASE_URL": url}).stdout.strip() == "0001"
    off = run("db", "upgrade", "--database-url", "off")
    assert off.returncode == 1 and "no database" in off.stderr


def test_prompts_save_list_show_export_import_on_this_machine(tmp_path: Path) -> None:
    env = {"PROMPTCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'lib.db'}"}
    saved = run("prompts", "save", "-", "--name", "客服", "--tag", "cs", "--opening", "您好",
                env=env, stdin="你是一个客服助手。\n")
    assert saved.returncode == 0, saved.stderr
    prompt_id, version = saved.stdout.split()
    assert version == "v1"
    text = tmp_path / "v2.txt"
    text.write_text("你是一名专业的客服助手。\n", encoding="utf-8")
    added = run("prompts", "save", str(text), "--to", prompt_id, "--feedback", "更专业", env=env)
    assert added.stdout.strip() == f"{prompt_id} v2"
    listed = run("prompts", "list", env=env)
    assert prompt_id in listed.stdout and "v2/2" in listed.stdout and "[cs]" in listed.stdout
    assert run("prompts", "show", prompt_id, env=env).stdout == "你是一名专业的客服助手。\n"
    assert run("prompts", "show", prompt_id, "--version", "1", env=env).stdout == \
        "你是一个客服助手。\n"
    shown = json.loads(run("prompts", "show", prompt_id, "--json", env=env).stdout)
    assert [v["feedback"] for v in shown["versions"]] == [None, "更专业"]
    export = tmp_path / "export.json"
    assert run("prompts", "export", "-o", str(export), env=env).returncode == 0
    other = {"PROMPTCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    imported = run("prompts", "import", str(export), env=other)
    assert imported.stdout.strip() == "imported: 1 prompts"
    assert run("prompts", "import", str(export), env=other).stdout.strip() == \
        "imported: nothing (1 already there)"
    assert run("prompts", "show", prompt_id, env=other).stdout == "你是一名专业的客服助手。\n"
    missing = run("prompts", "show", "nope", env=env)
    assert missing.returncode == 1 and "no prompt 'nope'" in missing.stderr
    bad = run("prompts", "save", "-", "--name", "x" * 201, env=env, stdin="t")
    assert bad.returncode == 1 and "(field: name)" in bad.stderr


def test_prompts_through_a_server_as_the_keys_owner(serve: Callable[..., RunningServer],
                                                    tmp_path: Path) -> None:
    server = serve(database_url=f"sqlite:///{tmp_path / 'srv.db'}",
                   api_keys="alice:pc-alice-3333333333")
    remote = ["--server", server.url, "--api-key", "pc-alice-3333333333"]
    saved = run("prompts", "save", "-", "--name", "remote", *remote, stdin="text")
    assert saved.returncode == 0, saved.stderr
    assert "remote" in run("prompts", "list", *remote).stdout
    document = json.loads(run("prompts", "export", *remote).stdout)
    assert document["owner"] == "alice"
    refused = run("prompts", "list", "--server", server.url, "--api-key", "wrong-key-000")
    assert refused.returncode == 1 and "403" in refused.stderr


@pytest.mark.parametrize("action", ["list", "export"])
def test_prompts_without_a_database_say_how_to_get_one(action: str) -> None:
    done = run("prompts", action, env={"PROMPTCAST_DATABASE_URL": "off"})
    assert done.returncode == 1 and "PROMPTCAST_DATABASE_URL" in done.stderr
