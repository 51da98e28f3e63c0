"""The page's resumable streams in real headless Chromium: a dropped connection
is resumed with no gap and no duplicate (or, when every retry fails, marked cut
off); Stop and closing the tab cancel the generation with DELETE; and a native
`EventSource` on the resume endpoint stops at the server's 204.

Same server, upstream double and browser set-up as tests/test_page.py, whose
fixtures and helpers (and its misbehaving `Proxy`) this module reuses.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from promptcast.wire.sse import Decoder

from . import test_page
from .conftest import RunningServer
from .test_page import Proxy, Seen, expect_state, history_entries, open_page, raw_text, start
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.browser

# The browser fixtures of tests/test_page.py: Chromium launched exactly as there.
playwright = test_page.playwright
browser = test_page.browser
new_page = test_page.new_page
page = test_page.page

# Keeps the bytes of every stream the page reads, per reader, as they arrive.
RECORD_READS = """(() => {
  window.__streams = [];
  const readers = new WeakMap();
  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = async function (...args) {
    const r = await read.apply(this, args);
    if (!readers.has(this)) {
      readers.set(this, window.__streams.length);
      window.__streams.push([]);
    }
    if (r.value instanceof Uint8Array) window.__streams[readers.get(this)].push(...r.value);
    return r;
  };
})();
"""

RESUMING = "Connection lost — resuming…"
# What the person sees, in each language: reconnecting, resuming, resumed, complete.
WORDING = {
    "en-US": ("Reconnecting…", RESUMING, "Resumed after a dropped connection.", "Complete"),
    "zh-CN": ("正在重新连接……", "连接中断，正在续传……", "连接中断后已续传。", "已完成"),
}
# Where the page would reconnect: 0.5 s, 1 s, 2 s, then every 4 s, while the
# next attempt still starts within 30 s of the drop (the server's grace period).
SCHEDULE = [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000]


def dechunk(raw: bytes | bytearray) -> bytes:
    """The payload of an HTTP/1.1 chunked body, including a last chunk cut short."""
    out = bytearray()
    pos = 0
    while (end := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:end].split(b";")[0], 16)
        if size == 0:
            break
        out += raw[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


def page_streams(page: Page) -> list[bytes]:
    """What the page's stream readers got, one byte string per body (RECORD_READS)."""
    return [bytes(values) for values in page.evaluate("window.__streams")]


def resume_requests(proxy: Proxy) -> list[Seen]:
    return [r for r in proxy.requests
            if r.method == "GET" and r.path.startswith("/optimize-stream/")]


# --- a dropped connection --------------------------------------------------------

FIRST = [f"第{i}段，" for i in range(1, 16)]
MIDDLE = [f"middle {i}; " for i in range(1, 11)]
LAST = [f"结尾{i}。" for i in range(1, 6)]
WHOLE = "".join(FIRST + MIDDLE + LAST)


@pytest.mark.parametrize("locale", WORDING)
def test_a_network_drop_mid_stream_is_resumed_with_no_gap_and_no_duplicate(
    server: RunningServer, upstream: UpstreamDouble, new_page: Callable[..., Page], locale: str,
) -> None:
    reconnecting, resuming, resumed, complete = WORDING[locale]
    page = new_page(locale=locale)
    replayed, live = upstream.gate(), upstream.gate()
    upstream.enqueue(Script.chat([*FIRST, replayed, *MIDDLE, live, *LAST], gap=0.005))
    # The browser's connection is reset after 1,500 bytes of the event stream
    # (part-way through an event); the resume request waits in the proxy.
    browser_has_text = threading.Event()
    proxy = Proxy(server.url, cut_after=1500, hold="/optimize-stream/",
                  cut_gate=browser_has_text)
    posted: list[Any] = []
    page.on("request", lambda r: posted.append(r.post_data_json) if r.method == "POST" else None)
    page.add_init_script(RECORD_READS)
    try:
        open_page(page, proxy.url)
        start(page, "drop me")
        # The reset waits until the page has read some of the stream: a reset can
        # otherwise discard what the proxy sent but the browser had not read yet.
        page.wait_for_function("() => (window.promptcast.result || '').length > 0")
        browser_has_text.set()
        assert proxy.wait_for(lambda: proxy.cuts == 1, 10)
        expect_state(page, "resuming")
        expect(page.locator("#statusBadge")).to_have_text(reconnecting)
        expect(page.locator("#noticeText")).to_have_text(resuming)
        expect(page.locator("#announcer")).to_have_text(resuming)
        # The page shows new text on the next animation frame, and the drop may
        # come in the same task as the last bytes: wait for the text (it failed
        # once reading at once, under a full `make test`).
        expect(page.locator("#resultRaw")).to_have_text(re.compile(r"\S"))
        before = raw_text(page)
        assert before and WHOLE.startswith(before) and len(before) < len("".join(FIRST))

        # The model goes on while nobody reads: this part is replayed from the store...
        replayed.set()
        proxy.release.set()
        expect(page.locator("#resultRaw")).to_have_text("".join(FIRST + MIDDLE))
        expect_state(page, "streaming")
        expect(page.locator("#noticeText")).to_have_text(resumed)
        expect(page.locator("#announcer")).to_have_text(resumed)
        expect(page.locator("#statResumes")).to_have_text("1")
        expect(page.locator("#statResumesItem")).to_be_visible()
        # ...and this part arrives live on the resumed connection.
        live.set()
        expect_state(page, "done")
    finally:
        proxy.close()

    assert raw_text(page) == WHOLE
    assert page.evaluate("window.promptcast.result") == WHOLE
    expect(page.locator("#statusBadge")).to_have_text(complete)
    expect(page.locator("#noticeText")).to_have_text(resumed)
    expect(page.locator("#review")).to_be_visible()
    assert [(e["result"], e["status"]) for e in history_entries(page)] == [(WHOLE, "done")]

    # One POST, flagged resumable; one resume, from the last event the page had
    # whole (a reset may also discard bytes the proxy sent but the browser had
    # not read yet: the page goes by what it got, not by what was sent).
    assert [body["resumable"] for body in posted] == [True]
    (resume,) = resume_requests(proxy)
    stream_id = resume.path.removeprefix("/optimize-stream/")
    received = page_streams(page)[0]
    assert dechunk(proxy.delivered[0]).startswith(received)
    got = Decoder().feed(received)
    assert [e.id for e in got] == [f"{stream_id}.{n}" for n in range(1, len(got) + 1)]
    assert resume.headers["last-event-id"] == got[-1].id
    assert resume.status == 200
    # The model's one generation ran to its end, never interrupted.
    assert len([r for r in upstream.requests if r.path.endswith("/chat/completions")]) == 1
    assert upstream.completed == 1 and upstream.client_closed == 0


def test_when_every_retry_fails_the_result_is_cut_off(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat([f"p{i} " for i in range(20)], gap=0.005))
    browser_has_text = threading.Event()
    proxy = Proxy(server.url, cut_after=1500, cut_gate=browser_has_text)
    tries: list[str | None] = []

    def unreachable(route: Route) -> None:
        tries.append(route.request.headers.get("last-event-id"))
        route.abort("connectionreset")

    page.route("**/optimize-stream/*", unreachable)
    # The page's clock is paused, so each backoff passes when the test says so.
    page.clock.install()
    try:
        open_page(page, proxy.url)
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        start(page, "no way back")
        # The reset waits until the page has read an event: a reset can otherwise
        # discard what the proxy sent but the browser had not read yet (then
        # there is no event to resume from, and nothing this test is about).
        page.wait_for_function("() => (window.promptcast.result || '').length > 0")
        browser_has_text.set()
        expect_state(page, "resuming")
        expect(page.locator("#noticeText")).to_have_text(RESUMING)
        for delay in SCHEDULE:
            with page.expect_event("requestfailed"):
                page.clock.run_for(delay)
        # The tenth attempt would start past 30 s: the page gives up.
        expect_state(page, "cutoff")
    finally:
        proxy.close()
    assert len(tries) == len(SCHEDULE)
    assert len(set(tries)) == 1 and tries[0], "every attempt resumed from the same event"
    expect(page.locator("#statusBadge")).to_have_text("Cut off")
    expect(page.locator("#noticeText")).to_contain_text("could not be restored")
    text = raw_text(page)
    assert text.startswith("p0 ") and len(text) < len("".join(f"p{i} " for i in range(20)))
    assert page.locator("#statResumesItem").is_hidden()
    assert history_entries(page)[0]["status"] == "cutoff"


# --- stopping ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_sends_delete_and_ends_the_upstream_request(
    server: RunningServer, upstream: UpstreamDouble, page: Page, how: str,
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["部分", "结果", gate, "never shown"]))
    open_page(page, server)
    with page.expect_response(f"{server.url}/optimize-stream") as posted:
        start(page, "stop me")
    stream_id = posted.value.headers["x-stream-id"]
    expect(page.locator("#resultRaw")).to_have_text("部分结果")

    with page.expect_request(lambda r: r.method == "DELETE") as deleted:
        if how == "button":
            page.click("#stopButton")
        else:
            page.keyboard.press("Escape")
    assert deleted.value.url == f"{server.url}/optimize-stream/{stream_id}"
    answer = deleted.value.response()
    assert answer is not None and answer.status == 202
    # Aborting the fetch alone would leave a resumable stream running for the
    # grace period; the DELETE stops the model's request at once.
    assert upstream.wait_for(lambda: upstream.client_closed == 1, 2)
    expect_state(page, "partial")
    expect(page.locator("#notice")).to_contain_text("Stopped")
    assert raw_text(page) == "部分结果"
    assert [(e["result"], e["status"]) for e in history_entries(page)] == [("部分结果", "partial")]
    # The stream the server kept ends the way the DELETE made it end.
    kept = httpx.get(f"{server.url}/optimize-stream/{stream_id}", timeout=5)
    assert kept.status_code == 200
    terminal = Decoder().feed(kept.content)[-1]
    assert terminal.event == "error" and json.loads(terminal.data)["code"] == "cancelled"
    gate.set()


def test_closing_the_tab_cancels_the_stream(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["still ", "writing", gate, "never read"]))
    open_page(page, server)
    start(page, "close me")
    expect(page.locator("#resultRaw")).to_have_text("still writing")
    page.close()
    # Well before the 30 s grace period: the page's DELETE on pagehide did it.
    assert upstream.wait_for(lambda: upstream.client_closed == 1, 5)
    gate.set()


# --- native EventSource --------------------------------------------------------------


def test_native_eventsource_replays_a_finished_stream_then_stops_at_the_204(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat(["原生", " EventSource", " works"]))
    with httpx.stream("POST", f"{server.url}/optimize-stream", timeout=10,
                      json={"prompt": "es", "resumable": True}) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-stream-id"]
        stored = Decoder().feed(response.read())
    assert stored[-1].data == "[DONE]"
    assert [e.id for e in stored] == [f"{stream_id}.{n}" for n in range(1, len(stored) + 1)]

    path = f"/optimize-stream/{stream_id}"
    proxy = Proxy(server.url, max_cuts=0)
    try:
        open_page(page, proxy.url)
        page.evaluate("""(url) => {
            window.__es = { events: [], errors: [] };
            const source = new EventSource(url);
            window.__source = source;
            source.onmessage = (e) => window.__es.events.push([e.lastEventId, e.data]);
            source.onerror = () => window.__es.errors.push(source.readyState);
        }""", path)
        # Every event, in order; the stream ends; EventSource reconnects by
        # itself with Last-Event-ID = the terminal frame's id; the 204 closes it.
        page.wait_for_function("() => window.__source.readyState === EventSource.CLOSED",
                               timeout=15_000)
        events = page.evaluate("window.__es.events")
        assert events == [[e.id, e.data] for e in stored]
        first, again = proxy.seen("GET", path)
        assert "last-event-id" not in first.headers and first.status == 200
        assert again.headers["last-event-id"] == stored[-1].id and again.status == 204
        # CLOSED for good: no third request comes, however long one waits
        # (Chromium would retry after 3 s).
        assert not proxy.wait_for(lambda: len(proxy.seen("GET", path)) > 2, 4)
        assert page.evaluate("window.__source.readyState") == 2
        assert page.evaluate("window.__es.errors")[-1] == 2
    finally:
        proxy.close()
