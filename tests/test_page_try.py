"""The workbench in real headless Chromium: trying two versions side by side, iterating with
feedback, the version list, and comparing models, against a real promptcast server whose
upstream is the scripted double. For try runs the double answers with the system prompt
it was given (`echo_system`), so each column shows exactly the prompt it ran.

Same browser set-up as tests/test_page.py, whose fixtures and helpers this module reuses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from promptcast.settings import Settings

from . import test_page
from .conftest import RunningServer, models_file, start_server
from .test_page import expect_state, open_page, raw_text, start
from .upstream_double import Script, Seen, UpstreamDouble, echo_system, system_prompt

pytestmark = pytest.mark.browser

playwright = test_page.playwright
browser = test_page.browser
new_page = test_page.new_page
page = test_page.page

ORIGINAL = "你是 {{shop}} 的客服助手，回答订单问题。"
V1 = "# 角色\n你是 {{shop}} 的在线客服助手。\n\n## 规则\n1. 先确认订单号。"
V2 = "# 角色\n你是 {{shop}} 的在线客服助手。\n\n## 规则\n1. 先确认订单号。\n2. 不要反问用户。"
MESSAGE = "我的订单三天了还没发货，能退款吗？"
OPENING = "您好，欢迎光临！请问有什么可以帮您？"


def chat_requests(upstream: UpstreamDouble) -> list[Seen]:
    """The upstream requests of try runs (a rewrite's system message is the meta-prompt)."""
    return [seen for seen in upstream.requests
            if not system_prompt(seen).startswith(("你是一名资深", "You are an expert"))]


def rewrite(page: Page, upstream: UpstreamDouble, text: str = V1, prompt: str = ORIGINAL,
            opening: str | None = None) -> None:
    """Run one rewrite of `prompt` that answers `text`: version 1 of the session."""
    upstream.enqueue(Script.chat([text[:10], text[10:]]))
    start(page, prompt, opening=opening)
    expect_state(page, "done")
    expect(page.locator("#versionList [aria-current=true] .version-label")).to_be_visible()


def column(page: Page, which: str) -> Any:
    return page.locator(f"#testColumn{which}")


def output(page: Page, which: str) -> Any:
    return page.locator(f"#testColumn{which} .test-output")


def fill_try(page: Page, message: str = MESSAGE, **variables: str) -> None:
    page.fill("#testMessageInput", message)
    for name, value in variables.items():
        page.fill(f'#testVariableFields input[data-variable="{name}"]', value)


# --- try: two columns at once ---------------------------------------------------------


def test_both_columns_stream_at_once_each_with_its_own_filled_prompt(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream, opening=OPENING)
    gate = threading.Event()
    upstream.respond = lambda seen: echo_system(seen, gate=gate)
    fill_try(page, shop="小张的店")
    page.click("#testRunButton")

    # Each column's first chunk is on screen while both upstreams hold the rest:
    # the tokens interleave, neither column waits for the other.
    expect(output(page, "Original")).to_have_text("你是 ")
    expect(output(page, "Rewrite")).to_have_text("# 角")
    expect(column(page, "Original")).to_have_attribute("data-state", "streaming")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "streaming")
    assert len(chat_requests(upstream)) == 2
    assert upstream.completed == 1  # only the rewrite so far
    expect(page.locator("#testStopButton")).to_be_enabled()
    gate.set()

    original = ORIGINAL.replace("{{shop}}", "小张的店")
    rewritten = V1.replace("{{shop}}", "小张的店")
    expect(output(page, "Original")).to_have_text(original)
    expect(output(page, "Rewrite")).to_have_text(rewritten)
    expect(column(page, "Original")).to_have_attribute("data-state", "done")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "done")
    expect(column(page, "Original").locator(".try-column-title")).to_have_text("Original")
    expect(column(page, "Rewrite").locator(".try-column-title")).to_have_text("v1")
    expect(column(page, "Rewrite").locator('[data-stat="tokens"]')).not_to_have_text("–")
    # Exactly two upstream requests, each system prompt the version it claims, filled;
    # the opening is the bot's first turn, then the customer's message.
    sent = {system_prompt(seen): seen.json() for seen in chat_requests(upstream)}
    assert sorted(sent) == sorted([original, rewritten])
    for system, body in sent.items():
        assert body["messages"] == [{"role": "system", "content": system},
                                    {"role": "assistant", "content": OPENING},
                                    {"role": "user", "content": MESSAGE}]
        assert body["model"] == "scripted-upstream"
    expect(column(page, "Original").locator(".try-turn-opening")).to_contain_text(OPENING)


def test_the_conversation_continues_with_each_columns_own_history(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    upstream.respond = echo_system
    fill_try(page, shop="ACME")
    page.click("#testRunButton")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "done")
    expect(column(page, "Original")).to_have_attribute("data-state", "done")
    page.fill("#testReplyInput", "订单号是 12345")
    page.click("#testReplyButton")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "done")
    expect(column(page, "Original")).to_have_attribute("data-state", "done")
    follow_ups = chat_requests(upstream)[2:]
    assert len(follow_ups) == 2
    for seen in follow_ups:
        system = system_prompt(seen)
        assert seen.json()["messages"] == [
            {"role": "system", "content": system},
            {"role": "user", "content": MESSAGE},
            {"role": "assistant", "content": system},  # this column's own answer
            {"role": "user", "content": "订单号是 12345"},
        ]
    expect(column(page, "Rewrite").locator(".try-turn-user")).to_have_count(2)


def test_stop_cancels_both_upstreams_within_a_second(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    gate = threading.Event()
    upstream.respond = lambda seen: echo_system(seen, gate=gate)
    fill_try(page, shop="ACME")
    page.click("#testRunButton")
    expect(output(page, "Rewrite")).to_have_text("# 角")
    expect(output(page, "Original")).to_have_text("你是 ")
    page.click("#testStopButton")
    stopped = time.monotonic()
    assert upstream.wait_for(lambda: upstream.client_closed >= 2, timeout=5)
    assert time.monotonic() - stopped < 1.0
    expect(column(page, "Original")).to_have_attribute("data-state", "partial")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "partial")
    expect(output(page, "Rewrite")).to_have_text("# 角")  # what arrived stays
    expect(page.locator("#testRunButton")).to_be_enabled()
    gate.set()


def test_closing_the_tab_cancels_both(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    upstream.respond = lambda seen: echo_system(seen, gate=threading.Event())
    fill_try(page, shop="ACME")
    page.click("#testRunButton")
    expect(output(page, "Rewrite")).to_have_text("# 角")
    expect(output(page, "Original")).to_have_text("你是 ")
    page.close()
    assert upstream.wait_for(lambda: upstream.client_closed >= 2, timeout=5)


def test_an_error_in_one_column_leaves_the_other_running(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    gate = threading.Event()

    def respond(seen: Seen) -> Script:
        if "规则" in system_prompt(seen):
            return Script.chat(["# 角色", "…"], then="drop")
        return echo_system(seen, gate=gate)

    upstream.respond = respond
    fill_try(page, shop="ACME")
    page.click("#testRunButton")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "error")
    expect(column(page, "Rewrite").locator(".try-error")).to_contain_text("Failed")
    expect(output(page, "Rewrite")).to_have_text("# 角色…")
    # The other column is still streaming, and finishes.
    expect(column(page, "Original")).to_have_attribute("data-state", "streaming")
    assert page.evaluate("window.promptcastWorkbench.trying") is True
    gate.set()
    expect(column(page, "Original")).to_have_attribute("data-state", "done")
    expect(output(page, "Original")).to_have_text("你是 ACME 的客服助手，回答订单问题。")
    assert column(page, "Original").locator(".try-error").is_hidden()


def test_each_column_counts_against_the_rate_limits(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble, page: Page,
) -> None:
    server = serve(max_concurrent_streams=2)
    open_page(page, server)
    rewrite(page, upstream)
    gate = threading.Event()
    upstream.respond = lambda seen: echo_system(seen, gate=gate)
    # A third stream is open (the double holds it): only one column fits.
    blocker = page.evaluate_handle("""() => {
      const controller = new AbortController();
      fetch('/v1/chat/completions', {method: 'POST', signal: controller.signal,
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({model: 'scripted', stream: true,
                              messages: [{role: 'system', content: 'hold'}]})}).catch(() => {});
      return controller;
    }""")
    assert upstream.wait_for(lambda: len(chat_requests(upstream)) == 1)
    fill_try(page, shop="ACME")
    page.click("#testRunButton")
    errored = page.locator(".try-column[data-state=error]")
    expect(errored).to_have_count(1)
    expect(errored.locator(".try-error")).to_contain_text("2 streams are already open")
    expect(page.locator(".try-column[data-state=streaming]")).to_have_count(1)
    gate.set()
    expect(page.locator(".try-column[data-state=done]")).to_have_count(1)
    blocker.evaluate("c => c.abort()")


def test_unfilled_variables_are_flagged_and_nothing_is_sent(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    page.fill("#testMessageInput", MESSAGE)
    field = page.locator('#testVariableFields input[data-variable="shop"]')
    expect(page.locator('#testVariableFields label[for="testVar0"]')).to_have_text("{{shop}}")
    page.click("#testRunButton")
    expect(page.locator("#tryError")).to_have_text("Fill in every variable first: {{shop}}.")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    assert chat_requests(upstream) == []
    field.fill("ACME")
    expect(field).not_to_have_attribute("aria-invalid", "true")


def test_try_needs_a_rewrite_and_a_message(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    page.click("#testRunButton")
    expect(page.locator("#tryError")).to_contain_text("Rewrite a prompt first")
    rewrite(page, upstream, text="Be brief.", prompt="Be short.")
    page.click("#testRunButton")
    expect(page.locator("#tryError")).to_have_text("Type a customer message first.")
    assert chat_requests(upstream) == []


# --- iterate and versions --------------------------------------------------------------


def test_iterate_sends_the_previous_rewrite_and_the_feedback(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    bodies: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/optimize-stream"):
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", record)
    rewrite(page, upstream, opening=OPENING)
    page.fill("#promptInput", "something else typed since")  # the session's original is sent
    upstream.enqueue(Script.chat([V2[:20], V2[20:]]))
    page.fill("#feedbackInput", "不要反问用户")
    page.click("#iterateButton")
    expect_state(page, "done")
    assert raw_text(page) == V2

    assert bodies[-1]["prompt"] == ORIGINAL
    assert bodies[-1]["previous"] == V1
    assert bodies[-1]["feedback"] == "不要反问用户"
    assert bodies[-1]["opening"] == OPENING
    messages = upstream.requests[-1].json()["messages"]
    assert f"<rewrite>\n{V1}\n</rewrite>" in messages[1]["content"]
    assert "<feedback>不要反问用户</feedback>" in messages[1]["content"]
    # The revision is v2, the current version; the feedback box is cleared.
    current = page.locator("#versionList [aria-current=true]")
    expect(current.locator(".version-label")).to_have_text("v2")
    expect(current.locator(".version-meta")).to_contain_text("feedback on v1: “不要反问用户”")
    expect(page.locator("#versionList .version")).to_have_count(3)
    expect(page.locator("#feedbackInput")).to_have_value("")
    # "Changes" compares the revision with what it revised.
    page.click("#tabDiff")
    expect(page.locator("#diffBody ins")).to_contain_text("不要反问用户")


def test_iterate_needs_a_version_and_feedback(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    page.fill("#feedbackInput", "更简洁")
    page.click("#iterateButton")
    expect(page.locator("#iterateError")).to_contain_text("Rewrite a prompt first")
    rewrite(page, upstream)
    page.fill("#feedbackInput", "")
    page.click("#iterateButton")
    expect(page.locator("#iterateError")).to_have_text("Say what to change first.")
    assert len(upstream.requests) == 1


def test_versions_can_be_shown_diffed_tried_and_restored(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    open_page(page, server)
    rewrite(page, upstream)
    upstream.enqueue(Script.chat([V2]))
    page.fill("#feedbackInput", "不要反问用户")
    page.click("#iterateButton")
    expect(page.locator("#versionList [aria-current=true] .version-label")).to_have_text("v2")

    v1 = page.locator('#versionList [data-version="1"]')
    v2 = page.locator('#versionList [data-version="2"]')
    v1.locator(".version-show").click()
    expect(page.locator("#versionViewerTitle")).to_have_text("v1")
    expect(page.locator("#versionText")).to_have_text(V1)

    v2.locator(".version-diff").click()
    expect(page.locator("#versionViewerTitle")).to_have_text("v1 → v2")
    expect(page.locator("#versionText ins")).to_have_text("2. 不要反问用户。")
    page.select_option("#versionDiffSelect", "0")
    expect(page.locator("#versionViewerTitle")).to_have_text("Original → v2")
    expect(page.locator("#versionText del").first).to_be_visible()

    v1.locator(".version-restore").click()
    expect(page.locator("#versionList [aria-current=true]")).to_have_attribute("data-version", "1")
    expect(page.locator("#resultRaw")).to_have_text(V1)
    expect(page.locator("#announcer")).to_have_text("v1 is now the current version.")
    # The next revision revises v1, the restored one.
    upstream.enqueue(Script.chat(["v3 text"]))
    page.fill("#feedbackInput", "更简洁")
    page.click("#iterateButton")
    expect(page.locator("#versionList [aria-current=true] .version-label")).to_have_text("v3")
    assert f"<rewrite>\n{V1}\n</rewrite>" in upstream.requests[-1].json()["messages"][1]["content"]
    expect(page.locator('#versionList [data-version="3"] .version-meta')).to_contain_text(
        "feedback on v1")

    # Try v2 beside the original.
    v2.locator(".version-try").click()
    expect(page.locator("#testRightSelect")).to_have_value("2")
    expect(page.locator("#testLeftSelect")).to_have_value("0")
    expect(page.locator("#testMessageInput")).to_be_focused()

    # The versions survive a reload (this browser's storage, until issue 20's database).
    page.reload()
    expect(page.locator("#versionList .version")).to_have_count(4)
    expect(page.locator("#versionList [aria-current=true]")).to_have_attribute("data-version", "3")


# --- compare models ----------------------------------------------------------------------


@pytest.fixture
def three_models(tmp_path: Path, upstream: UpstreamDouble) -> Iterator[RunningServer]:
    path = models_file(tmp_path, upstream)
    text = path.read_text(encoding="utf-8")
    for name in ("scripted-b", "scripted-c"):
        text += (f'\n[models."{name}"]\nprovider = "openai"\n'
                 f'base_url = "{upstream.base_url}"\nmodel = "{name}-upstream"\n')
    path.write_text(text, encoding="utf-8")
    server = start_server(Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path),
                                             "PROMPTCAST_DEFAULT_MODEL": "scripted"}))
    yield server
    server.stop()


def test_model_compare_runs_three_streams_each_stoppable_and_one_is_kept(
    three_models: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    gate = threading.Event()
    upstream.respond = lambda seen: Script.chat([f"by {seen.json()['model']}", gate, " end"])
    open_page(page, three_models)
    page.fill("#promptInput", ORIGINAL)
    for name in ("scripted", "scripted-b", "scripted-c"):
        page.check(f'#compareModelList input[value="{name}"]')
    # A fourth cannot be ticked while three are.
    expect(page.locator("#compareModelList input:not(:checked)").first).to_be_disabled()
    page.click("#compareButton")
    columns = page.locator("#compareColumns .compare-column")
    expect(columns).to_have_count(3)
    for name in ("scripted", "scripted-b", "scripted-c"):
        expect(page.locator(f'.compare-column[data-model="{name}"] .compare-output')).to_have_text(
            f"by {name}-upstream")
    assert sorted(seen.json()["model"] for seen in upstream.requests) == [
        "scripted-b-upstream", "scripted-c-upstream", "scripted-upstream"]
    assert all(seen.json()["stream"] for seen in upstream.requests)

    page.locator('.compare-column[data-model="scripted-c"] .compare-stop').click()
    assert upstream.wait_for(lambda: upstream.client_closed >= 1, timeout=5)
    expect(page.locator('.compare-column[data-model="scripted-c"]')).to_have_attribute(
        "data-state", "partial")
    gate.set()
    kept = page.locator('.compare-column[data-model="scripted-b"]')
    expect(kept).to_have_attribute("data-state", "done")
    expect(page.locator('.compare-column[data-model="scripted-c"] .compare-pick')).to_be_disabled()
    kept.locator(".compare-pick").click()
    current = page.locator("#versionList [aria-current=true]")
    expect(current.locator(".version-label")).to_have_text("v1")
    expect(current.locator(".version-meta")).to_contain_text("scripted-b")
    expect(page.locator("#resultRaw")).to_have_text("by scripted-b-upstream end")
    expect(page.locator("#testModelSelect")).to_have_value("scripted-b")


def test_compare_needs_two_or_three_models(server: RunningServer, page: Page) -> None:
    open_page(page, server)
    page.fill("#promptInput", ORIGINAL)
    page.click("#compareButton")
    expect(page.locator("#compareError")).to_have_text("Choose 2 or 3 models.")


# --- the local model, phone width, Chinese ------------------------------------------------


def test_the_page_says_what_local_is(server: RunningServer, page: Page) -> None:
    open_page(page, server)
    note = page.locator("#localModelNote")
    assert note.is_hidden()
    page.select_option("#modelSelect", "local")
    expect(note).to_contain_text("small offline demo model")
    expect(note).to_contain_text("DASHSCOPE_API_KEY")
    page.click("#langButton")
    expect(note).to_contain_text("离线演示模型")


def test_the_workbench_works_at_phone_width_in_chinese(
    server: RunningServer, upstream: UpstreamDouble, new_page: Callable[..., Page],
) -> None:
    page = open_page(new_page(locale="zh-CN", width=375, height=740, is_mobile=True,
                              has_touch=True), server)
    rewrite(page, upstream, opening=OPENING)
    upstream.respond = echo_system
    fill_try(page, shop="小张的店")
    page.click("#testRunButton")
    expect(column(page, "Rewrite")).to_have_attribute("data-state", "done")
    expect(column(page, "Original")).to_have_attribute("data-state", "done")
    expect(column(page, "Original").locator(".try-column-title")).to_have_text("原始")
    expect(column(page, "Original").locator(".badge")).to_have_text("已完成")
    upstream.enqueue(Script.chat([V2]))
    page.fill("#feedbackInput", "不要反问用户")
    page.click("#iterateButton")
    expect(page.locator("#versionList [aria-current=true] .version-label")).to_have_text("v2")
    page.locator('#versionList [data-version="2"] .version-diff').click()
    expect(page.locator("#versionText ins")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # The columns stack: one above the other.
    boxes = [column(page, which).bounding_box() for which in ("Original", "Rewrite")]
    assert boxes[0] and boxes[1] and boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1
    assert page.evaluate("window.__csp") == []
