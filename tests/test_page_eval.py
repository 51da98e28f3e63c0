"""The evaluation panel in real headless Chromium, against a real server and the scripted
upstream: a test set imported, a run's matrix filling in cell by cell, the summary and charts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

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
