"""The evaluation panel in real headless Chromium, against a real server and the scripted
upstream: a test set imported, a run's matrix filling in cell by cell, the summary and charts;
with the library, test sets saved and loaded there and finished runs kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from . import test_page
from .conftest import RunningServer
from .eval_double import EvalUpstream
from .upstream_double import UpstreamDouble

pytestmark = pytest.mark.browser

playwright = test_page.playwright
browser = test_page.browser
new_page = test_page.new_page
page = test_page.page

V1 = "BOT v1\nYou are a support bot."
V2 = "BOT v2\nYou are the support bot of {{shop}}."
CASES = [
    {"id": "refund", "message": "Can I get a refund?", "contains": "refund",
     "vars": {"shop": "Acme"}},
    {"id": "hello", "message": "Hi", "vars": {"shop": "Acme"}},
    {"id": "parcel", "message": "Where is my parcel?", "max_chars": 10, "vars": {"shop": "Acme"}},
]
ANSWERS = {
    ("BOT v1", "Can I get a refund?"): "We can refund you. [score=6]",
    ("BOT v1", "Hi"): "Hello! [score=7]",
    ("BOT v1", "Where is my parcel?"): "It is on its way to you. [score=5]",
    ("BOT v2", "Can I get a refund?"): "Acme will refund you. [score=9]",
    ("BOT v2", "Hi"): "Hi from Acme [score=8]",
    ("BOT v2", "Where is my parcel?"): "Shipped.",  # the scripted judge gives it 5
}


def cell(page: Page, prompt: str, case: int) -> object:
    return page.locator(f'#evalMatrix td.eval-cell[data-prompt="{prompt}"][data-case="{case}"]')


def test_the_matrix_fills_in_cell_by_cell_as_the_run_streams(
    server: RunningServer, upstream: UpstreamDouble, page: Page, tmp_path: Path
) -> None:
    gates = {key: threading.Event() for key in ANSWERS}
    upstream.responder = EvalUpstream(ANSWERS, gates=gates)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")

    test_page.open_page(page, server)
    page.fill("#promptInput", V1)
    page.click("#evalAddOriginal")
    page.click("#evalAddPrompt")
    page.locator(".eval-prompt-text").nth(1).fill(V2)
    page.locator(".eval-prompt-name").nth(1).fill("v2")
    page.locator(".eval-prompt-name").nth(1).dispatch_event("change")
    page.set_input_files("#evalImport", str(cases))
    expect(page.locator("#evalCasesBody tr")).to_have_count(3)
    expect(page.locator("#evalModelSelect")).to_have_value("scripted")
    page.select_option("#evalJudgeSelect", "scripted")
    page.click("#evalRunButton")

    expect(page.locator("#evalMatrix td.eval-cell")).to_have_count(6)
    for prompt in ("original", "v2"):
        for case in range(3):
            expect(cell(page, prompt, case)).to_have_attribute("data-state", "pending")
    # One answer at a time: each shows up alone while the others still wait.
    gates[("BOT v2", "Hi")].set()
    expect(cell(page, "v2", 1)).to_have_attribute("data-state", "done")
    expect(cell(page, "v2", 1).locator(".eval-answer")).to_have_text("Hi from Acme [score=8]")
    expect(cell(page, "v2", 1).locator(".eval-score")).to_contain_text("8")
    for other in [("original", 0), ("original", 1), ("v2", 0)]:
        assert cell(page, *other).get_attribute("data-state") == "pending"
    expect(page.locator("#evalProgress")).to_contain_text("1")
    gates[("BOT v1", "Can I get a refund?")].set()
    expect(cell(page, "original", 0)).to_have_attribute("data-pass", "true")
    expect(cell(page, "original", 0).locator(".eval-checks")).to_contain_text("contains 'refund'")
    assert cell(page, "original", 2).get_attribute("data-state") == "pending"

    for gate in gates.values():
        gate.set()
    expect(page.locator("#evalSummary tbody tr")).to_have_count(2)
    expect(page.locator('#evalSummary tr[data-prompt="v2"] td').nth(0)).to_have_text(
        "100.0 % (2/2)")
    expect(page.locator('#evalSummary tr[data-prompt="v2"] td').nth(1)).to_have_text("7.33")
    expect(cell(page, "v2", 2)).to_have_attribute("data-pass", "true")
    expect(cell(page, "original", 2)).to_have_attribute("data-pass", "false")
    # The charts: bars per prompt (rules, score), a heat map square per cell by score.
    expect(page.locator("#evalChart rect")).to_have_count(4)
    expect(page.locator("#evalHeatmap .eval-heat.heat-score-9")).to_have_count(1)
    expect(page.locator("#evalHeatmap .eval-heat.heat-pending")).to_have_count(0)
    expect(page.locator("#evalRunPanel")).to_have_attribute("data-outcome", "done")

    with page.expect_download() as download:
        page.click("#evalExportCSV")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.startswith("prompt,case,id,message,answer") and "Hi from Acme" in text


def test_the_test_set_table_edits_and_keeps_its_cases(
    server: RunningServer, new_page: Callable[..., Page]
) -> None:
    page = test_page.open_page(new_page(locale="zh-CN"), server)
    expect(page.locator("#evalTitle")).to_have_text("评测")
    # No library on this server: the set lives in this browser only.
    expect(page.locator("#library")).to_have_attribute("data-state", "off")
    expect(page.locator("#evalSaved")).to_be_hidden()
    expect(page.locator("#evalPast")).to_be_hidden()
    page.click("#evalAddCase")
    page.fill("#evalCaseMessage", "我的订单三天了还没发货")
    page.fill("#evalCaseContains", "订单号\n抱歉")
    page.select_option("#evalCaseLanguage", "zh")
    page.click("#evalCaseSave")
    expect(page.locator("#evalCasesBody tr")).to_have_count(1)
    expect(page.locator("#evalCasesBody")).to_contain_text("contains: 订单号 | 抱歉")
    page.click("#evalCasesBody button >> nth=0")  # edit
    page.fill("#evalCaseMaxChars", "0")
    page.click("#evalCaseSave")
    expect(page.locator("#evalCaseError")).to_contain_text("max_chars")
    page.fill("#evalCaseMaxChars", "120")
    page.click("#evalCaseSave")
    expect(page.locator("#evalCasesBody")).to_contain_text("max_chars: 120")
    # Kept in the browser: a reload finds it.
    page.reload()
    expect(page.locator("#evalCasesBody tr")).to_have_count(1)
    with page.expect_download() as download:
        page.click("#evalExportCases")
    line = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert line == {"message": "我的订单三天了还没发货", "contains": ["订单号", "抱歉"],
                    "max_chars": 120, "language": "zh"}
    page.click("#evalCasesBody button >> nth=1")  # delete
    expect(page.locator("#evalCasesBody tr")).to_have_count(0)
    expect(page.locator("#evalCasesEmpty")).to_be_visible()


# ---------------------------------------------------------------- with the library

KEY = "pc-eval-page-key-0123"


@pytest.fixture
def library(serve: Callable[..., RunningServer], tmp_path: Path) -> RunningServer:
    return serve(database_url=f"sqlite:///{tmp_path / 'eval-page.db'}")


def add_case(page: Page, message: str, contains: str = "") -> None:
    page.click("#evalAddCase")
    page.fill("#evalCaseMessage", message)
    page.fill("#evalCaseContains", contains)
    page.click("#evalCaseSave")


def saved_sets(server: RunningServer, key: str | None = None) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=server.url, headers=headers) as api:
        items = api.get("/api/testsets").json()["items"]
        return [api.get(f"/api/testsets/{t['id']}").json() for t in items]


def accept(dialog: Dialog) -> None:
    dialog.accept()


def test_test_sets_are_saved_loaded_and_deleted_in_the_library(
    library: RunningServer, new_page: Callable[..., Page]
) -> None:
    page = test_page.open_page(new_page(), library)
    page.on("dialog", accept)
    status = page.locator("#evalSavedStatus")
    expect(page.locator("#evalSaved")).to_be_visible()
    expect(status).to_have_text("No saved test set yet: save this one.")
    expect(page.locator("#evalSavedSave")).to_be_disabled()
    add_case(page, "Can I get a refund?", "refund")
    page.fill("#evalSavedName", "support")
    page.click("#evalSavedSaveNew")
    expect(status).to_have_text("This table is the saved test set “support”.")
    expect(page.locator("#evalSavedPick option")).to_have_text(["support (1 cases)"])
    [saved] = saved_sets(library)
    assert saved["name"] == "support"
    assert saved["cases"] == [{"message": "Can I get a refund?", "contains": "refund"}]

    # An edit is a change not saved yet; "Save over it" sends it with the ETag it loaded.
    add_case(page, "Hi")
    expect(status).to_have_text("Changed since saved as “support”.")
    page.click("#evalSavedSave")
    expect(status).to_have_text("This table is the saved test set “support”.")
    expect(page.locator("#evalSavedPick option")).to_have_text(["support (2 cases)"])
    [saved] = saved_sets(library)
    assert [c["message"] for c in saved["cases"]] == ["Can I get a refund?", "Hi"]

    # Another tab changes it: saving over it now is refused, and nothing is overwritten.
    with httpx.Client(base_url=library.url) as api:
        assert api.patch(f"/api/testsets/{saved['id']}",
                         json={"cases": [{"message": "from the other tab"}]}).status_code == 200
    add_case(page, "Where is my parcel?")
    page.click("#evalSavedSave")
    expect(status).to_contain_text("“support” was changed elsewhere since you loaded it")
    expect(status).to_have_attribute("data-kind", "error")
    assert [c["message"] for c in saved_sets(library)[0]["cases"]] == ["from the other tab"]

    # Loading it gives the other tab's version (the unsaved edits are confirmed away).
    page.click("#evalSavedLoad")
    expect(page.locator("#evalCasesBody tr")).to_have_count(1)
    expect(page.locator("#evalCasesBody")).to_contain_text("from the other tab")
    expect(status).to_have_text("This table is the saved test set “support”.")

    # Another browser, the same library: it is there to load.
    other = test_page.open_page(new_page(), library)
    expect(other.locator("#evalSavedPick option")).to_have_text(["support (1 cases)"])
    other.click("#evalSavedLoad")
    expect(other.locator("#evalCasesBody")).to_contain_text("from the other tab")

    page.click("#evalSavedDelete")
    expect(page.locator("#evalSavedPick option")).to_have_count(0)
    expect(status).to_have_text("No saved test set yet: save this one.")
    assert saved_sets(library) == []


def test_a_run_of_a_saved_test_set_is_kept_and_listed(
    library: RunningServer, upstream: UpstreamDouble, page: Page
) -> None:
    upstream.responder = EvalUpstream(ANSWERS)
    with httpx.Client(base_url=library.url) as api:
        testset = api.post("/api/testsets", json={"name": "shop", "cases": CASES[:2]}).json()
    test_page.open_page(page, library)
    expect(page.locator("#evalPastEmpty")).to_be_visible()
    expect(page.locator("#evalSavedPick option")).to_have_text(["shop (2 cases)"])
    page.click("#evalSavedLoad")
    expect(page.locator("#evalCasesBody tr")).to_have_count(2)
    page.click("#evalAddPrompt")
    page.locator(".eval-prompt-text").nth(0).fill(V2)
    page.locator(".eval-prompt-name").nth(0).fill("v2")
    page.locator(".eval-prompt-name").nth(0).dispatch_event("change")
    page.select_option("#evalJudgeSelect", "none")
    page.click("#evalRunButton")
    expect(page.locator("#evalRunPanel")).to_have_attribute("data-outcome", "done")
    kept = page.locator('#evalPastList li[data-current="true"]')
    expect(kept).to_contain_text("shop")
    expect(kept).to_contain_text("v2: 100 %")
    with httpx.Client(base_url=library.url) as api:
        [evaluation] = api.get("/api/evaluations").json()["items"]
    # The table was the saved set, unchanged: the run named it, and the evaluation links it.
    assert evaluation["testset"] == testset["id"]
    assert kept.get_attribute("data-id") == evaluation["id"]
    with page.expect_download() as download:
        kept.locator("button").click()
    document = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert document["id"] == evaluation["id"] and len(document["cells"]) == 2


def test_with_keys_on_the_key_prompt_covers_the_test_sets_and_the_run(
    serve: Callable[..., RunningServer], tmp_path: Path, upstream: UpstreamDouble,
    new_page: Callable[..., Page]
) -> None:
    upstream.responder = EvalUpstream(ANSWERS)
    server = serve(database_url=f"sqlite:///{tmp_path / 'keys.db'}", api_keys=f"team:{KEY}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
        api.post("/api/testsets", json={"name": "team set", "cases": CASES[1:2]})
    page = new_page()
    page.goto(server.url + "/")
    expect(page.locator("#keyDialog")).to_be_visible()
    page.fill("#keyInput", KEY)
    page.click("#keySave")
    expect(page.locator("#keyDialog")).to_be_hidden()
    expect(page.locator("#evalSavedPick option")).to_have_text(["team set (1 cases)"])
    page.click("#evalSavedLoad")
    expect(page.locator("#evalCasesBody")).to_contain_text("Hi")
    page.click("#evalAddPrompt")
    page.locator(".eval-prompt-text").nth(0).fill(V1)
    expect(page.locator("#evalModelSelect")).to_have_value("scripted")
    page.select_option("#evalJudgeSelect", "none")
    page.click("#evalRunButton")
    expect(page.locator("#evalRunPanel")).to_have_attribute("data-outcome", "done")
    expect(page.locator('#evalPastList li[data-current="true"]')).to_contain_text("team set")
    add_case(page, "Can I get a refund?", "refund")
    page.fill("#evalSavedName", "team set 2")
    page.click("#evalSavedSaveNew")
    expect(page.locator("#evalSavedStatus")).to_have_text(
        "This table is the saved test set “team set 2”.")
    assert sorted(t["name"] for t in saved_sets(server, KEY)) == ["team set", "team set 2"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as api:
        assert api.get("/api/library").json()["owner"] == "team"
        assert len(api.get("/api/evaluations").json()["items"]) == 1
