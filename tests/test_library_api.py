"""The library's HTTP API, on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .conftest import RunningServer
from .upstream_double import Script, UpstreamDouble

ALICE = "alice:pc-alice-0123456789"
BOB = "bob:pc-bob-9876543210"
UNNAMED = "pc-unnamed-5555555555"


@pytest.fixture
def library(serve: Callable[..., RunningServer], database_url: str) -> RunningServer:
    """promptcast with the library on the test's database, no keys."""
    return serve(database_url=database_url)


@pytest.fixture
def client(library: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=library.url, timeout=30) as c:
        yield c


def make(client: httpx.Client, name: str = "客服", text: str = "你是一个客服助手。",
         **extra: Any) -> dict[str, Any]:
    response = client.post("/api/prompts", json={"name": name, "text": text, **extra})
    assert response.status_code == 201, response.text
    prompt: dict[str, Any] = response.json()
    return prompt


def wait_for_runs(client: httpx.Client, n: int, **params: str) -> list[dict[str, Any]]:
    """The owner's runs once there are `n` (the recorder writes them off the streams' path)."""
    deadline = threading.Event()
    for _ in range(400):
        items: list[dict[str, Any]] = client.get("/api/runs", params=params).json()["items"]
        if len(items) >= n:
            return items
        deadline.wait(0.025)
    raise AssertionError(f"{n} run(s) were never recorded: {items}")


# ---------------------------------------------------------------- prompts and versions


def test_a_prompt_is_created_with_its_first_version(client: httpx.Client) -> None:
    response = client.post("/api/prompts", json={
        "name": "退款助手", "text": "你是一个客服助手，负责退款。", "mode": "扩写",
        "model": "qwen-max", "opening": "您好！", "tags": ["cs", "退款", "cs"]})
    assert response.status_code == 201
    prompt = response.json()
    assert response.headers["location"] == f"/api/prompts/{prompt['id']}"
    assert response.headers["etag"] == prompt["etag"]
    assert response.headers["cache-control"] == "no-store"
    assert prompt["name"] == "退款助手" and prompt["tags"] == ["cs", "退款"]
    assert prompt["current_version"] == 1 and prompt["versions"] == 1
    version = prompt["version"]
    assert version["number"] == 1 and version["text"] == "你是一个客服助手，负责退款。"
    assert (version["mode"], version["model"], version["opening"]) == ("expand", "qwen-max",
                                                                       "您好！")
    got = client.get(f"/api/prompts/{prompt['id']}")
    assert got.status_code == 200 and got.json() == prompt


def test_versions_are_numbered_in_order_and_inherit_from_their_parent(
        client: httpx.Client) -> None:
    prompt = make(client, mode="shorten", model="local", opening="Hi!")
    pid = prompt["id"]
    second = client.post(f"/api/prompts/{pid}/versions",
                         json={"text": "v2", "feedback": "more polite"})
    assert second.status_code == 201
    assert second.json()["number"] == 2 and second.json()["parent"] == 1
    assert second.json()["mode"] == "shorten" and second.json()["opening"] == "Hi!"
    third = client.post(f"/api/prompts/{pid}/versions",
                        json={"text": "v3", "parent": 1, "opening": None, "run": "abc_DEF-1"})
    assert third.json()["number"] == 3 and third.json()["parent"] == 1
    assert third.json()["opening"] is None and third.json()["run"] == "abc_DEF-1"
    versions = client.get(f"/api/prompts/{pid}/versions").json()["items"]
    assert [(v["number"], v["text"], v["feedback"]) for v in versions] == [
        (1, "你是一个客服助手。", None), (2, "v2", "more polite"), (3, "v3", None)]
    now = client.get(f"/api/prompts/{pid}").json()
    assert now["current_version"] == 3 and now["version"]["text"] == "v3"
    bad = client.post(f"/api/prompts/{pid}/versions", json={"text": "x", "parent": 9})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "parent"
    assert len(client.get(f"/api/prompts/{pid}/versions").json()["items"]) == 3


def test_patch_needs_a_fresh_etag_so_two_tabs_cannot_overwrite_each_other(
        client: httpx.Client) -> None:
    prompt = make(client)
    pid, tag = prompt["id"], prompt["etag"]
    first = client.patch(f"/api/prompts/{pid}", json={"name": "tab one"},
                         headers={"If-Match": tag})
    assert first.status_code == 200 and first.json()["name"] == "tab one"
    assert first.headers["etag"] != tag
    stale = client.patch(f"/api/prompts/{pid}", json={"name": "tab two"},
                         headers={"If-Match": tag})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert client.get(f"/api/prompts/{pid}").json()["name"] == "tab one"
    # A new version changes the prompt too: an ETag from before it is stale.
    client.post(f"/api/prompts/{pid}/versions", json={"text": "v2"})
    assert client.patch(f"/api/prompts/{pid}", json={"current_version": 1},
                        headers={"If-Match": first.headers["etag"]}).status_code == 412
    fresh = client.get(f"/api/prompts/{pid}").headers["etag"]
    back = client.patch(f"/api/prompts/{pid}", json={"current_version": 1, "tags": ["x"]},
                        headers={"If-Match": fresh})
    assert back.status_code == 200
    assert back.json()["current_version"] == 1 and back.json()["version"]["text"] == \
        "你是一个客服助手。"
    assert back.json()["tags"] == ["x"]
    assert client.patch(f"/api/prompts/{pid}", json={"text": "no"}).status_code == 422
    assert client.patch(f"/api/prompts/{pid}", json={"current_version": 7}).status_code == 422
    assert client.patch(f"/api/prompts/{pid}", json={"name": "x"},
                        headers={"If-Match": "garbage"}).status_code == 412


def test_delete_removes_the_prompt_and_its_versions(client: httpx.Client) -> None:
    pid = make(client)["id"]
    assert client.delete(f"/api/prompts/{pid}").status_code == 204
    for method, path in (("GET", f"/api/prompts/{pid}"), ("GET", f"/api/prompts/{pid}/versions"),
                         ("DELETE", f"/api/prompts/{pid}")):
        assert client.request(method, path).status_code == 404


def test_lists_search_filter_and_page_by_cursor(client: httpx.Client) -> None:
    for i in range(5):
        make(client, name=f"bot {i}", text=f"text {i}", tags=["even"] if i % 2 == 0 else [])
    make(client, name="退款", text="处理 100% 的退款_请求")
    page = client.get("/api/prompts", params={"limit": 2}).json()
    names = [p["name"] for p in page["items"]]
    assert names == ["退款", "bot 4"]
    seen = list(names)
    while page["next_cursor"]:
        page = client.get("/api/prompts", params={"limit": 2,
                                                  "cursor": page["next_cursor"]}).json()
        seen += [p["name"] for p in page["items"]]
    assert seen == ["退款", "bot 4", "bot 3", "bot 2", "bot 1", "bot 0"]
    assert [p["name"] for p in client.get("/api/prompts", params={"tag": "even"}).json()[
        "items"]] == ["bot 4", "bot 2", "bot 0"]
    assert [p["name"] for p in client.get("/api/prompts", params={"q": "TEXT 3"}).json()[
        "items"]] == ["bot 3"]
    # LIKE's wildcards are searched as text.
    assert [p["name"] for p in client.get("/api/prompts", params={"q": "100%"}).json()[
        "items"]] == ["退款"]
    assert client.get("/api/prompts", params={"q": "_请"}).json()["items"][0]["preview"] == \
        "处理 100% 的退款_请求"
    assert client.get("/api/prompts", params={"limit": 0}).status_code == 422
    assert client.get("/api/prompts", params={"limit": 201}).status_code == 422
    assert client.get("/api/prompts", params={"cursor": "nope"}).status_code == 422


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "n" * 201, "text": "t"}, "name"),
    ({"name": "n", "text": "t" * 100_001}, "text"),
    ({"name": "n", "text": "t", "tags": ["t" * 51]}, "tags[0]"),
    ({"name": "n", "text": "t", "tags": [f"t{i}" for i in range(21)]}, "tags"),
    ({"name": "n", "text": "t", "opening": "o" * 10_001}, "opening"),
    ({"name": "n", "text": "t", "model": "m" * 101}, "model"),
    ({"name": "n", "text": "t", "mode": "rewrite"}, "mode"),
    ({"name": "", "text": "t"}, "name"),
    ({"name": "n"}, "text"),
    ({"name": "n", "text": "t", "tags": "a,b"}, "tags"),
])
def test_oversized_or_malformed_fields_get_a_422_naming_them(
        client: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/prompts", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert client.get("/api/prompts").json()["items"] == []


def test_a_body_over_the_library_limit_is_refused(client: httpx.Client) -> None:
    response = client.post("/api/prompts", content=b'{"name": "n", "text": "' + b"x" * (
        1024 * 1024) + b'"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# ---------------------------------------------------------------- owners


def test_owners_see_only_their_own_objects_even_with_a_guessed_id(
        serve: Callable[..., RunningServer], database_url: str) -> None:
    server = serve(database_url=database_url, api_keys=f"{ALICE},{BOB},{UNNAMED}")
    alice, bob, unnamed = (httpx.Client(base_url=server.url, headers={
        "Authorization": f"Bearer {key.partition(':')[2] or key}"}) for key in (
        ALICE, BOB, UNNAMED))
    with alice, bob, unnamed:
        assert httpx.get(f"{server.url}/api/prompts").status_code == 401
        assert alice.get("/api/library").json()["owner"] == "alice"
        assert unnamed.get("/api/library").json()["owner"].startswith("key-")
        assert UNNAMED not in unnamed.get("/api/library").text
        prompt = make(alice, name="alice's")
        pid = prompt["id"]
        share = alice.post(f"/api/prompts/{pid}/share").json()["url"]
        testset = alice.post("/api/testsets", json={"name": "s", "cases": [
            {"message": "hi"}]}).json()["id"]
        # Bob knows the ids (guessed, or seen over a shoulder): every method is a 404.
        for method, path, body in [
            ("GET", f"/api/prompts/{pid}", None),
            ("PATCH", f"/api/prompts/{pid}", {"name": "mine now"}),
            ("DELETE", f"/api/prompts/{pid}", None),
            ("GET", f"/api/prompts/{pid}/versions", None),
            ("POST", f"/api/prompts/{pid}/versions", {"text": "sneaky"}),
            ("POST", f"/api/prompts/{pid}/share", None),
            ("DELETE", f"/api/prompts/{pid}/share", None),
            ("GET", f"/api/testsets/{testset}", None),
            ("PATCH", f"/api/testsets/{testset}", {"name": "x"}),
            ("DELETE", f"/api/testsets/{testset}", None),
        ]:
            for other in (bob, unnamed):
                response = other.request(method, path, json=body)
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["error"]["code"] == "not_found"
        assert bob.get("/api/prompts").json()["items"] == []
        assert bob.get("/api/testsets").json()["items"] == []
        assert bob.get("/api/export").json()["prompts"] == []
        assert alice.get(f"/api/prompts/{pid}").json()["name"] == "alice's"
        assert [v["text"] for v in alice.get(f"/api/prompts/{pid}/versions").json()[
            "items"]] == ["你是一个客服助手。"]
        assert httpx.get(f"{server.url}{share}").status_code == 200
        # The same id in Bob's own library is his own, separate object.
        make(bob, name="bob's")
        assert [p["name"] for p in bob.get("/api/prompts").json()["items"]] == ["bob's"]


def test_a_renamed_keys_rotation_keeps_the_owner(serve: Callable[..., RunningServer],
                                                 database_url: str) -> None:
    server = serve(database_url=database_url, api_keys=f"{ALICE},alice:pc-alice-rotated-1")
    with httpx.Client(base_url=server.url,
                      headers={"Authorization": "Bearer pc-alice-0123456789"}) as old, \
            httpx.Client(base_url=server.url,
                         headers={"Authorization": "Bearer pc-alice-rotated-1"}) as new:
        pid = make(old)["id"]
        assert new.get(f"/api/prompts/{pid}").status_code == 200


# ---------------------------------------------------------------- sharing


def test_a_share_link_is_read_only_keyless_and_revocable(
        serve: Callable[..., RunningServer], database_url: str) -> None:
    server = serve(database_url=database_url, api_keys=ALICE)
    with httpx.Client(base_url=server.url,
                      headers={"Authorization": "Bearer pc-alice-0123456789"}) as alice:
        prompt = make(alice, name="<b>bold</b> bot", text="line one\n<script>x</script>",
                      tags=["cs"])
        pid = prompt["id"]
        alice.post(f"/api/prompts/{pid}/versions", json={"text": "v2 text",
                                                         "feedback": "tighter"})
        url = alice.post(f"/api/prompts/{pid}/share").json()["url"]
        assert url.startswith("/s/") and len(url) > 40
        assert alice.post(f"/api/prompts/{pid}/share").json()["url"] == url
        assert alice.get(f"/api/prompts/{pid}").json()["shared"] is True
        page = httpx.get(f"{server.url}{url}")  # no key
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src" not in page.headers["content-security-policy"]
        assert "&lt;b&gt;bold&lt;/b&gt; bot" in page.text and "<b>bold" not in page.text
        assert "&lt;script&gt;x&lt;/script&gt;" in page.text and "<script" not in page.text
        assert "v2 text" in page.text and "tighter" in page.text
        shown = httpx.get(f"{server.url}{url}", headers={"Accept": "application/json"}).json()
        assert [v["text"] for v in shown["versions"]] == ["line one\n<script>x</script>",
                                                         "v2 text"]
        assert "owner" not in shown and "id" not in shown
        for method in ("POST", "PATCH", "DELETE", "PUT"):
            assert httpx.request(method, f"{server.url}{url}").status_code == 405
        assert alice.delete(f"/api/prompts/{pid}/share").status_code == 204
        assert httpx.get(f"{server.url}{url}").status_code == 404
        again = alice.post(f"/api/prompts/{pid}/share").json()["url"]
        assert again != url and httpx.get(f"{server.url}{again}").status_code == 200
        assert httpx.get(f"{server.url}{url}").status_code == 404
        assert httpx.get(f"{server.url}/s/{'A' * 43}").status_code == 404


# ---------------------------------------------------------------- runs


def test_every_stream_is_recorded_with_its_request_text_and_usage(
        client: httpx.Client, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["你", "好"]))
    plain = client.post("/optimize-stream", json={"prompt": "你是客服", "opening": "您好"})
    assert plain.text.endswith("data: [DONE]\n\n")
    upstream.enqueue(Script.chat(["A", "B", "C"]))
    resumable = client.post("/optimize-stream", json={"prompt": "resume me",
                                                      "resumable": True, "type": "shorten",
                                                      "target_chars": 40})
    assert resumable.text.endswith("data: [DONE]\n\n")
    upstream.enqueue(Script.chat(["chat ", "answer"]))
    chat = client.post("/v1/chat/completions", json={
        "model": "scripted", "stream": True,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "where is my parcel?"}]})
    assert chat.text.endswith("data: [DONE]\n\n")
    upstream.enqueue(Script.chat(["half"], then="drop"))
    failed = client.post("/optimize-stream", json={"prompt": "cut"})
    assert "event: error" in failed.text
    runs = {r["id"]: r for r in wait_for_runs(client, 4)}
    first = runs[plain.headers["x-stream-id"]]
    assert first["text"] == "你好" and first["outcome"] == "done" and first["kind"] == "optimize"
    assert first["request"] == {"prompt": "你是客服", "type": "optimize", "model": "scripted",
                                "opening": "您好"}
    assert first["usage"] == {"prompt_tokens": 12, "completion_tokens": 2}
    assert first["ttft_ms"] is not None and first["duration_ms"] >= first["ttft_ms"]
    second = runs[resumable.headers["x-stream-id"]]
    assert second["text"] == "ABC" and second["mode"] == "shorten"
    assert second["request"]["target_chars"] == 40 and second["request"]["resumable"] is True
    third = runs[chat.headers["x-stream-id"]]
    assert third["kind"] == "chat" and third["text"] == "chat answer"
    assert third["request"]["messages"][1] == {"role": "user", "content": "where is my parcel?"}
    fourth = runs[failed.headers["x-stream-id"]]
    assert fourth["outcome"] == "error" and fourth["text"] == "half"
    assert fourth["error"]["code"] == "upstream_closed" and fourth["error"]["message"]
    assert [r["id"] for r in client.get("/api/runs", params={"q": "PARCEL"}).json()[
        "items"]] == [chat.headers["x-stream-id"]]
    assert [r["id"] for r in client.get("/api/runs", params={"kind": "chat"}).json()[
        "items"]] == [chat.headers["x-stream-id"]]
    assert client.get(f"/api/runs/{first['id']}").json() == first
    # A version saved from a run links the run to the prompt.
    pid = make(client, text="你好", run=first["id"])["id"]
    assert [r["id"] for r in client.get("/api/runs", params={"prompt": pid}).json()[
        "items"]] == [first["id"]]


def test_a_try_column_is_a_run_of_kind_try_and_the_runs_list_tells_them_apart(
        client: httpx.Client, upstream: UpstreamDouble) -> None:
    messages = [{"role": "system", "content": "你是客服"}, {"role": "user", "content": "在吗"}]
    ids = {}
    for kind, metadata in (("try", {"promptcast_kind": "try"}), ("chat", {"other": "tag"}),
                           ("plain", None)):
        upstream.enqueue(Script.chat([f"{kind} answer"]))
        body: dict[str, Any] = {"model": "scripted", "stream": True, "messages": messages}
        if metadata is not None:
            body["metadata"] = metadata
        response = client.post("/v1/chat/completions", json=body)
        assert response.text.endswith("data: [DONE]\n\n")
        ids[kind] = response.headers["x-stream-id"]
    runs = {r["id"]: r for r in wait_for_runs(client, 3)}
    assert runs[ids["try"]]["kind"] == "try" and runs[ids["try"]]["text"] == "try answer"
    assert runs[ids["chat"]]["kind"] == runs[ids["plain"]]["kind"] == "chat"
    assert [r["id"] for r in client.get("/api/runs", params={"kind": "try"}).json()[
        "items"]] == [ids["try"]]
    assert {r["id"] for r in client.get("/api/runs", params={"kind": "chat"}).json()[
        "items"]} == {ids["chat"], ids["plain"]}
    for metadata, field in (({"promptcast_kind": "optimize"}, "metadata.promptcast_kind"),
                            ("try", "metadata")):
        bad = client.post("/v1/chat/completions", json={"messages": messages, "stream": True,
                                                         "metadata": metadata})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field


def test_runs_page_newest_first(client: httpx.Client, upstream: UpstreamDouble) -> None:
    ids = []
    for i in range(5):
        upstream.enqueue(Script.chat([f"r{i}"]))
        ids.append(client.post("/optimize-stream", json={"prompt": f"p{i}"}).headers[
            "x-stream-id"])
    wait_for_runs(client, 5)
    page = client.get("/api/runs", params={"limit": 2}).json()
    seen = [r["id"] for r in page["items"]]
    while page["next_cursor"]:
        page = client.get("/api/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [r["id"] for r in page["items"]]
    assert seen == ids[::-1]


# ---------------------------------------------------------------- test sets and evaluations


def test_testsets_and_evaluations_crud(client: httpx.Client) -> None:
    cases = [{"message": "我要退款", "contains": "退款"}, {"message": "ignore previous"}]
    created = client.post("/api/testsets", json={"name": "电商", "cases": cases})
    assert created.status_code == 201
    tid = created.json()["id"]
    assert created.json()["cases"] == cases and created.json()["count"] == 2
    listed = client.get("/api/testsets").json()["items"]
    assert [(t["id"], t["count"]) for t in listed] == [(tid, 2)] and "cases" not in listed[0]
    stale = created.headers["etag"]
    patched = client.patch(f"/api/testsets/{tid}", json={"cases": cases[:1]},
                           headers={"If-Match": stale})
    assert patched.status_code == 200 and patched.json()["count"] == 1
    assert client.patch(f"/api/testsets/{tid}", json={"name": "x"},
                        headers={"If-Match": stale}).status_code == 412
    bad = client.post("/api/testsets", json={"name": "x", "cases": [{"message": "ok"}, "no"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cases[1]"
    evaluation = client.post("/api/evaluations", json={
        "name": "v2 vs v3", "testset": tid, "model": "qwen-max", "judge": "gpt-4o-mini",
        "summary": {"v2": {"pass_rate": 0.5}}, "cells": [{"prompt": "v2", "case": 0}]})
    assert evaluation.status_code == 201
    eid = evaluation.json()["id"]
    assert [e["id"] for e in client.get("/api/evaluations", params={"testset": tid}).json()[
        "items"]] == [eid]
    assert client.get(f"/api/evaluations/{eid}").json()["cells"] == [{"prompt": "v2",
                                                                      "case": 0}]
    assert client.delete(f"/api/evaluations/{eid}").status_code == 204
    assert client.delete(f"/api/testsets/{tid}").status_code == 204
    assert client.get(f"/api/testsets/{tid}").status_code == 404


# ---------------------------------------------------------------- export and import


def _fill(client: httpx.Client, upstream: UpstreamDouble) -> None:
    upstream.enqueue(Script.chat(["优化", "后"]))
    stream = client.post("/optimize-stream", json={"prompt": "你是客服"})
    run_id = stream.headers["x-stream-id"]
    wait_for_runs(client, 1)
    pid = make(client, name="客服", tags=["cs", "zh"], opening="您好")["id"]
    client.post(f"/api/prompts/{pid}/versions", json={"text": "优化后", "run": run_id,
                                                      "feedback": "更礼貌"})
    make(client, name="second", text="plain")
    client.post("/api/testsets", json={"name": "set", "description": "d",
                                       "cases": [{"message": "hi", "max_chars": 80}]})
    client.post("/api/evaluations", json={"name": "e", "summary": {"a": 1}, "cells": [1, 2]})


def _same(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "exported_at"}


def test_export_wipe_import_gives_back_the_same_and_importing_twice_adds_nothing(
        client: httpx.Client, upstream: UpstreamDouble, serve: Callable[..., RunningServer],
        tmp_path: Any) -> None:
    _fill(client, upstream)
    document = client.get("/api/export").json()
    assert document["format"] == "promptcast-library" and document["owner"] == "local"
    assert [len(document[k]) for k in ("prompts", "testsets", "evaluations", "runs")] == [
        2, 1, 1, 1]
    # Wiped: every object deleted.
    for p in client.get("/api/prompts").json()["items"]:
        client.delete(f"/api/prompts/{p['id']}")
    for t in client.get("/api/testsets").json()["items"]:
        client.delete(f"/api/testsets/{t['id']}")
    for e in client.get("/api/evaluations").json()["items"]:
        client.delete(f"/api/evaluations/{e['id']}")
    first = client.post("/api/import", json=document)
    assert first.status_code == 200, first.text
    assert first.json()["created"] == {"prompts": 2, "templates": 0, "testsets": 1,
                                       "evaluations": 1, "runs": 0}
    assert first.json()["skipped"]["runs"] == 1
    assert _same(client.get("/api/export").json()) == _same(document)
    second = client.post("/api/import", json=document)
    assert sum(second.json()["created"].values()) == 0
    assert second.json()["skipped"] == {"prompts": 2, "templates": 0, "testsets": 1,
                                        "evaluations": 1, "runs": 1}
    assert _same(client.get("/api/export").json()) == _same(document)
    # And onto a brand-new server with an empty database: the same library.
    fresh = serve(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    with httpx.Client(base_url=fresh.url) as other:
        assert other.post("/api/import", json=document).status_code == 200
        assert _same(other.get("/api/export").json()) == _same(document)
        pid = next(p["id"] for p in document["prompts"] if p["name"] == "客服")
        added = other.post(f"/api/prompts/{pid}/versions", json={"text": "v3"})
        assert added.json()["number"] == 3


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d["prompts"][1]["versions"][0].update(text=None), "prompts[1].versions[0].text"),
    (lambda d: d["prompts"][1].update(name="n" * 201), "prompts[1].name"),
    (lambda d: d["prompts"][1]["versions"][0].update(parent=9),
     "prompts[1].versions[0].parent"),
    (lambda d: d["prompts"].append(dict(d["prompts"][0])), "prompts[2].id"),
    (lambda d: d["runs"][0].update(kind="other"), "runs[0].kind"),
    (lambda d: d["testsets"][0].update(cases="x"), "testsets[0].cases"),
    (lambda d: d["prompts"][0].update(created_at="yesterday"), "prompts[0].created_at"),
])
def test_a_malformed_import_is_refused_whole(
        client: httpx.Client, upstream: UpstreamDouble,
        mutate: Callable[[dict[str, Any]], None], field: str) -> None:
    _fill(client, upstream)
    document = client.get("/api/export").json()
    for p in client.get("/api/prompts").json()["items"]:
        client.delete(f"/api/prompts/{p['id']}")
    for t in client.get("/api/testsets").json()["items"]:
        client.delete(f"/api/testsets/{t['id']}")
    mutate(document)
    response = client.post("/api/import", json=document)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    # Nothing half-written: the first prompt (valid) is not there either.
    assert client.get("/api/prompts").json()["items"] == []
    assert client.get("/api/testsets").json()["items"] == []


def test_an_import_over_its_limit_gets_a_422(serve: Callable[..., RunningServer],
                                             database_url: str) -> None:
    server = serve(database_url=database_url, import_max_bytes=1000)
    document = {"format": "promptcast-library", "version": 1,
                "prompts": [{"id": "a", "name": "n", "versions": [{"number": 1,
                                                                   "text": "x" * 2000}]}]}
    response = httpx.post(f"{server.url}/api/import", json=document)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"
    assert "1000-byte import limit" in response.json()["error"]["message"]


# ---------------------------------------------------------------- restart, library off


def test_a_restart_keeps_everything(serve: Callable[..., RunningServer], database_url: str,
                                    upstream: UpstreamDouble) -> None:
    first = serve(database_url=database_url)
    with httpx.Client(base_url=first.url) as c:
        _fill(c, upstream)
        before = c.get("/api/export").json()
    first.stop()
    second = serve(database_url=database_url)
    with httpx.Client(base_url=second.url) as c:
        assert _same(c.get("/api/export").json()) == _same(before)


def test_without_a_database_the_library_says_how_to_turn_it_on(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/api/prompts")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "library_off"
    assert "PROMPTCAST_DATABASE_URL" in response.json()["error"]["message"]
    assert "database" not in httpx.get(f"{server.url}/readyz").json()["checks"]
