"""The library panel in real headless Chromium: saving, versions, diff, share, the key prompt,
and the history as a cache of the server's runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from . import test_page as page_fixtures
from .conftest import RunningServer
from .test_page import open_page, raw_text, start
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.browser

# test_page.py's browser fixtures, used here too.
playwright = page_fixtures.playwright
browser = page_fixtures.browser
new_page = page_fixtures.new_page
page = page_fixtures.page

KEY = "pc-page-key-0123456789"


@pytest.fixture
def library(serve: Callable[..., RunningServer], tmp_path: Path) -> RunningServer:
    return serve(database_url=f"sqlite:///{tmp_path / 'page.db'}")


def run_once(page: Page, upstream: UpstreamDouble, prompt: str, pieces: list[str]) -> None:
    upstream.enqueue(Script.chat(pieces))
    start(page, prompt)
    expect(page.locator("#result")).to_have_attribute("data-state", "done")
    assert raw_text(page) == "".join(pieces)


def test_saving_a_rewrite_its_versions_the_diff_and_opening_one(
        page: Page, library: RunningServer, upstream: UpstreamDouble) -> None:
    open_page(page, library)
    expect(page.locator("#library")).to_have_attribute("data-state", "on")
    expect(page.locator("#libraryList")).to_contain_text("No saved prompt yet")
    run_once(page, upstream, "你是一个客服助手。", ["你是一名", "专业的客服助手。"])
    page.click("#saveButton")
    expect(page.locator("#saveDialog")).to_be_visible()
    expect(page.locator("#saveName")).to_have_value("你是一个客服助手。")
    page.fill("#saveName", "客服 bot")
    page.fill("#saveFeedback", "更专业")
    page.click("#saveConfirm")
    expect(page.locator("#saveDialog")).to_be_hidden()
    expect(page.locator("#libraryList")).to_contain_text("客服 bot")
    expect(page.locator("#libraryPromptName")).to_have_text("客服 bot")
    expect(page.locator(".library-version")).to_have_count(2)
    expect(page.locator(".library-version").first).to_contain_text("更专业")

    # A second rewrite, saved as a new version of the same prompt.
    page.fill("#promptInput", "")
    run_once(page, upstream, "你是一名专业的客服助手。", ["你是一名专业、", "耐心的客服助手。"])
    page.click("#saveButton")
    expect(page.locator('#saveForm input[value="version"]')).to_be_checked()
    page.fill("#saveFeedback", "加上耐心")
    page.click("#saveConfirm")
    expect(page.locator(".library-version")).to_have_count(3)

    with httpx.Client(base_url=library.url) as api:
        prompt = api.get("/api/prompts").json()["items"][0]
        versions = api.get(f"/api/prompts/{prompt['id']}/versions").json()["items"]
        runs = api.get("/api/runs").json()["items"]
    assert [(v["number"], v["text"], v["feedback"]) for v in versions] == [
        (1, "你是一个客服助手。", None), (2, "你是一名专业的客服助手。", "更专业"),
        (3, "你是一名专业、耐心的客服助手。", "加上耐心")]
    assert {v["run"] for v in versions[1:]} == {r["id"] for r in runs}

    # Compare v1 → v3: what was added and removed is marked.
    page.locator('.library-version[data-number="1"] input[name="diffA"]').check()
    page.locator('.library-version[data-number="3"] input[name="diffB"]').check()
    page.click("#libraryDiffButton")
    diff = page.locator("#libraryDiff")
    expect(diff).to_be_visible()
    expect(diff).to_have_attribute("data-pair", "1-3")
    assert diff.locator("ins").count() > 0 and diff.locator("del").count() > 0
    assert "耐心" in diff.locator("ins").all_text_contents()[-1] or "耐心" in diff.inner_text()

    # Open v1 into the editor.
    page.click('.library-version[data-number="1"] button[data-open]')
    expect(page.locator("#promptInput")).to_have_value("你是一个客服助手。")


def test_share_and_revoke_from_the_page(new_page: Callable[..., Page],
                                        library: RunningServer) -> None:
    with httpx.Client(base_url=library.url) as api:
        api.post("/api/prompts", json={"name": "shared bot", "text": "hello <b>world</b>"})
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    open_page(page, library)
    page.click(".library-pick")
    expect(page.locator("#libraryPromptName")).to_have_text("shared bot")
    page.click("#libraryShare")
    link = page.locator("#libraryShareLink")
    expect(link).to_be_visible()
    url = link.get_attribute("href")
    assert url and "/s/" in url
    assert page.evaluate("navigator.clipboard.readText()") == url
    viewer = new_page()  # someone else, no key, no library of their own
    viewer.goto(url)
    expect(viewer.locator("#shareName")).to_have_text("shared bot")
    expect(viewer.locator(".share-text")).to_have_text("hello <b>world</b>")
    page.click("#libraryUnshare")
    expect(page.locator("#libraryShareBox")).to_be_hidden()
    assert httpx.get(url).status_code == 404


def test_the_key_prompt_makes_every_call_of_the_page_work(
        new_page: Callable[..., Page], serve: Callable[..., RunningServer],
        tmp_path: Path, upstream: UpstreamDouble) -> None:
    server = serve(database_url=f"sqlite:///{tmp_path / 'keys.db'}", api_keys=f"team:{KEY}")
    page = new_page()
    page.goto(server.url + "/")
    dialog = page.locator("#keyDialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#keyNote")).to_have_text("This server needs an API key.")
    page.fill("#keyInput", "wrong-key-123")
    page.click("#keySave")
    expect(dialog).to_be_visible()
    expect(page.locator("#keyNote")).to_contain_text("did not accept")
    page.fill("#keyInput", KEY)
    page.click("#keySave")
    expect(dialog).to_be_hidden()
    expect(page.locator("#modelSelect")).to_have_value("scripted")
    expect(page.locator("#library")).to_have_attribute("data-state", "on")
    # The stream's POST carries the key too, and its run belongs to the key's owner.
    run_once(page, upstream, "key prompt", ["keyed ", "answer"])
    with httpx.Client(base_url=server.url,
                      headers={"Authorization": f"Bearer {KEY}"}) as api:
        assert api.get("/api/library").json()["owner"] == "team"
        for _ in range(200):
            runs = api.get("/api/runs").json()["items"]
            if runs:
                break
            page.wait_for_timeout(25)
        assert [r["text"] for r in runs] == ["keyed answer"]
    assert page.evaluate("sessionStorage.getItem('promptcast.apiKey')") == KEY
    assert page.evaluate("localStorage.getItem('promptcast.apiKey')") is None
    # A reload in the same tab does not ask again.
    page.reload()
    expect(page.locator("#modelSelect")).to_have_value("scripted")
    expect(dialog).to_be_hidden()
    expect(page.locator("#library")).to_have_attribute("data-state", "on")


def test_the_history_is_a_cache_of_the_servers_runs(
        page: Page, library: RunningServer, upstream: UpstreamDouble) -> None:
    with httpx.Client(base_url=library.url) as api:
        upstream.enqueue(Script.chat(["from ", "elsewhere"]))
        stream = api.post("/optimize-stream", json={"prompt": "made by curl"})
        run_id = stream.headers["x-stream-id"]
        for _ in range(200):
            if api.get("/api/runs").json()["items"]:
                break
            page.wait_for_timeout(25)
    open_page(page, library)
    item = page.locator(".history-item").filter(has_text="made by curl")
    expect(item).to_have_count(1)
    item.locator(".history-restore").click()
    expect(page.locator("#resultRaw")).to_have_text("from elsewhere")
    item.locator("[data-action='delete']").click()
    expect(page.locator(".history-item").filter(has_text="made by curl")).to_have_count(0)
    with httpx.Client(base_url=library.url) as api:
        for _ in range(200):
            if api.get(f"/api/runs/{run_id}").status_code == 404:
                break
            page.wait_for_timeout(25)
        assert api.get(f"/api/runs/{run_id}").status_code == 404


def test_without_a_library_the_panel_says_so(page: Page, server: RunningServer,
                                             upstream: UpstreamDouble) -> None:
    open_page(page, server)
    expect(page.locator("#library")).to_have_attribute("data-state", "off")
    expect(page.locator("#libraryStatus")).to_contain_text("PROMPTCAST_DATABASE_URL")
    run_once(page, upstream, "no library", ["still ", "works"])
    expect(page.locator("#saveButton")).to_be_hidden()


def test_a_template_is_copied_edited_saved_and_used_by_start(
        page: Page, library: RunningServer, upstream: UpstreamDouble) -> None:
    open_page(page, library)
    page.click("#templateBox summary")
    expect(page.locator("#templatePick")).to_have_value("optimize.en")
    text = page.locator("#templateText")
    assert "{prompt}" in text.input_value() and "[user]" in text.input_value()
    expect(page.locator("#templateName")).to_have_value("optimize.en-mine")
    # A text without {prompt} is refused, naming the slot.
    page.fill("#templateText", "House rules.\n[user]\nno slot")
    page.click("#templateSave")
    expect(page.locator("#templateError")).to_contain_text("{prompt}")
    page.fill("#templateText", "House rules: bullets only.\n[user]\nREWRITE: {prompt}")
    page.fill("#templateName", "house")
    page.click("#templateSave")
    expect(page.locator("#templatePick")).to_have_value("house")
    expect(page.locator("#templateDelete")).to_be_visible()
    page.select_option("#templateUse", "house")
    run_once(page, upstream, "be kind", ["bulleted"])
    assert upstream.requests[-1].json()["messages"] == [
        {"role": "system", "content": "House rules: bullets only."},
        {"role": "user", "content": "REWRITE: be kind"}]
    # Remembered across a reload.
    page.reload()
    expect(page.locator("#templateUse")).to_have_value("house")
