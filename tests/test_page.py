"""The page in real headless Chromium, against a real promptcast server whose
upstream is the scripted test double (tests/upstream_double.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from .conftest import RunningServer
from .upstream_double import Script, UpstreamDouble, chunk_json, event, parse_head

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Installed before any page script: records hostile-code side effects, CSP
# violations and the byte chunks the page's stream reader receives.
WATCH = """
window.__pwned = [];
window.__csp = [];
window.__reads = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
window.alert = window.confirm = window.prompt = () => {
  window.__pwned.push('dialog');
  return true;
};
const read = ReadableStreamDefaultReader.prototype.read;
ReadableStreamDefaultReader.prototype.read = async function (...args) {
  const r = await read.apply(this, args);
  if (r.value instanceof Uint8Array) window.__reads.push([r.value.length, r.value[0]]);
  return r;
};
"""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context; fails the test on any page error."""
    contexts = []
    errors: list[str] = []

    def _new_page(locale: str = "en-US", width: int = 1280, height: int = 900,
                  **options: Any) -> Page:
        context = browser.new_context(locale=locale, viewport={"width": width, "height": height},
                                      **options)
        context.add_init_script(WATCH)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(10_000)
        return page

    yield _new_page
    for context in contexts:
        context.close()
    assert errors == []


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


def open_page(page: Page, server: RunningServer | str) -> Page:
    url = server if isinstance(server, str) else server.url
    page.goto(url + "/")
    expect(page.locator("#modelSelect")).to_have_value("scripted")
    return page


def start(page: Page, prompt: str, opening: str | None = None) -> None:
    page.fill("#promptInput", prompt)
    if opening is not None:
        page.fill("#openingInput", opening)
    page.click("#startButton")


def raw_text(page: Page) -> str:
    text: str = page.locator("#resultRaw").evaluate("el => el.textContent")
    return text


def expect_state(page: Page, state: str, timeout: float = 10_000) -> None:
    expect(page.locator("#result")).to_have_attribute("data-state", state, timeout=timeout)


def history_entries(page: Page) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = page.evaluate(
        "JSON.parse(localStorage.getItem('promptcast.history.v1') || '[]')")
    return entries


# --- streaming ------------------------------------------------------------------


def test_the_result_grows_while_the_stream_is_open(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    first, second = upstream.gate(), upstream.gate()
    upstream.enqueue(Script.chat(["# 标题\n\n", "第一句。", first, "Second **sentence**. ", second,
                                  "最后一句。"]))
    open_page(page, server)
    start(page, "写一段客服开场白")

    expect(page.locator("#resultRaw")).to_have_text("# 标题\n\n第一句。")
    expect_state(page, "streaming")
    expect(page.locator("#result")).to_have_attribute("aria-busy", "true")
    expect(page.locator("#stopButton")).to_be_enabled()
    expect(page.locator("#startButton")).to_be_disabled()
    expect(page.locator("#resultRendered h1")).to_have_text("标题")
    expect(page.locator("#statTtft")).not_to_have_text("–")
    expect(page.locator("#statTokens")).to_have_text("2")

    first.set()
    expect(page.locator("#resultRaw")).to_have_text("# 标题\n\n第一句。Second **sentence**. ")
    expect_state(page, "streaming")
    expect(page.locator("#resultRendered strong")).to_have_text("sentence")
    assert page.locator("#review").is_hidden()

    second.set()
    expect_state(page, "done")
    assert raw_text(page) == "# 标题\n\n第一句。Second **sentence**. 最后一句。"
    expect(page.locator("#result")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#statusBadge")).to_have_text("Complete")
    expect(page.locator("#review")).to_be_visible()
    expect(page.locator("#startButton")).to_be_enabled()
    expect(page.locator("#stopButton")).to_be_disabled()
    assert page.evaluate("window.promptcast.result") == raw_text(page)


def test_chinese_split_across_network_reads_renders_exactly(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    pieces = ["你好，世界！", "流式输出😀，", "汉字被拆开也不会乱码。", "中文標點「引號」與𠮷字。"]
    steps: list[Any] = [event(chunk_json("", role="assistant"))]
    for piece in pieces:
        # The upstream writes each event one byte per TCP segment (the server's decoder)...
        data = event(chunk_json(piece))
        steps += [data[i:i + 1] for i in range(len(data))]
    steps += [event(chunk_json(finish="stop")), b"data: [DONE]\n\n"]
    upstream.enqueue(Script.raw(*steps))
    # ...and the proxy hands the stream to the browser 5 bytes at a time (the page's).
    proxy = Proxy(server.url, slice_size=5)
    try:
        open_page(page, proxy.url)
        start(page, "split")
        expect_state(page, "done", timeout=20_000)
    finally:
        proxy.close()
    assert raw_text(page) == "".join(pieces)
    assert page.evaluate("window.promptcast.result") == "".join(pieces)
    expect(page.locator("#resultRendered")).to_have_text("".join(pieces))
    reads = page.evaluate("window.__reads")
    # Reads did begin inside a character (with a UTF-8 continuation byte).
    assert any(0x80 <= first <= 0xBF for _, first in reads), reads


def test_stop_aborts_and_ends_the_upstream_request(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["部分", "结果", gate, "never shown"]))
    open_page(page, server)
    start(page, "stop me")
    expect(page.locator("#resultRaw")).to_have_text("部分结果")

    page.click("#stopButton")
    assert upstream.wait_for(lambda: upstream.client_closed >= 1, timeout=5)
    expect_state(page, "partial")
    expect(page.locator("#statusBadge")).to_have_text("Partial")
    expect(page.locator("#notice")).to_contain_text("Stopped")
    assert raw_text(page) == "部分结果"
    assert page.locator("#review").is_hidden()
    assert [(e["result"], e["status"]) for e in history_entries(page)] == [("部分结果", "partial")]
    gate.set()


def test_ctrl_enter_starts_and_escape_stops(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["one ", gate, "two"]))
    open_page(page, server)
    page.fill("#promptInput", "keyboard")
    page.focus("#promptInput")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#resultRaw")).to_have_text("one ")
    page.keyboard.press("Escape")
    assert upstream.wait_for(lambda: upstream.client_closed >= 1, timeout=5)
    expect_state(page, "partial")
    gate.set()


def test_a_mid_stream_upstream_failure_shows_its_message(
    server: RunningServer, upstream: UpstreamDouble, new_page: Callable[..., Page],
) -> None:
    upstream.enqueue(Script.chat(["已经", "写了"], then="drop"))
    page = open_page(new_page(locale="zh-CN"), server)
    start(page, "失败")
    expect_state(page, "error")
    expect(page.locator("#statusBadge")).to_have_text("失败")
    expect(page.locator("#noticeText")).to_contain_text("下方内容不完整")
    expect(page.locator("#noticeDetail")).to_be_visible()
    assert raw_text(page) == "已经写了"


def test_a_timeout_shows_its_message(
    serve: Callable[..., RunningServer], upstream: UpstreamDouble, page: Page,
) -> None:
    server = serve(idle_timeout=0.5)
    upstream.enqueue(Script.chat(["slow ", 3.0, "too late"]))
    open_page(page, server)
    start(page, "time me out")
    expect_state(page, "timeout")
    expect(page.locator("#statusBadge")).to_have_text("Timed out")
    expect(page.locator("#noticeText")).to_contain_text("Timed out")
    expect(page.locator("#noticeDetail")).to_contain_text("0.5 s")
    assert raw_text(page) == "slow "


def stream_gone(route: Route) -> None:
    """Answer a resume as the server does once a stream has expired."""
    route.fulfill(status=404, content_type="application/json",
                  body='{"error":{"code":"not_found","message":"no stream: it has expired"}}')


def test_a_stream_without_its_terminal_frame_is_marked_cut_off(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat(["complete ", "looking ", "text"]))

    def truncate(route: Route) -> None:
        response = route.fetch()
        body = response.body()
        assert body.rstrip().endswith(b"data: [DONE]")
        # The body ends part-way through the terminal frame, cleanly (no reset).
        route.fulfill(response=response, body=body[: body.rindex(b"data: [DONE]") + 8])

    page.route("**/optimize-stream", truncate)
    # The page tries to resume (tests/test_page_resume.py); here the stream is gone.
    page.route("**/optimize-stream/*", stream_gone)
    open_page(page, server)
    start(page, "cut")
    expect_state(page, "cutoff")
    expect(page.locator("#statusBadge")).to_have_text("Cut off")
    expect(page.locator("#noticeText")).to_contain_text("Cut off")
    expect(page.locator("#noticeText")).to_contain_text("no longer has this stream")
    expect(page.locator("#noticeDetail")).to_contain_text("it has expired")
    assert raw_text(page) == "complete looking text"
    assert page.locator("#review").is_hidden()
    assert history_entries(page)[0]["status"] == "cutoff"


@dataclass
class Seen:
    """One request as the proxy forwarded it (the server's view)."""

    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None  # the response's, once its head went through


class Proxy:
    """A loopback TCP proxy in front of promptcast that can misbehave like a network.

    It adds `Connection: close` to every response, so each connection carries
    one request and one response. On an event-stream response, `slice_size`
    forwards the body in pieces of that many bytes, each its own TCP segment
    (so the browser's reads split characters); `cut_marker` resets the
    connection just before that text would reach the browser, `cut_after`
    once that many body bytes have; either cuts at most `max_cuts` connections
    (None: all). A reset closes the server's side too, as a dead network would.
    Requests whose path starts with `hold` wait until `release` is set.
    `requests` lists what was forwarded (with the response status); `delivered`
    the raw (chunked) body bytes each event-stream response got to the browser.
    """

    def __init__(self, target: str, *, cut_marker: bytes | None = None,
                 cut_after: int | None = None, max_cuts: int | None = 1,
                 slice_size: int | None = None, hold: str | None = None,
                 cut_gate: threading.Event | None = None) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.cut_marker = cut_marker
        self.cut_after = cut_after
        self.max_cuts = max_cuts
        # Set by the test once the browser has what came before the cut: the reset
        # then cannot discard bytes the browser had not read yet.
        self.cut_gate = cut_gate
        self.slice_size = slice_size
        self.hold = hold
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cuts = 0
        self.requests: list[Seen] = []
        self.delivered: list[bytearray] = []
        self._cond = threading.Condition()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (re-checked on every request and cut) or `timeout`."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def seen(self, method: str, path: str) -> list[Seen]:
        with self._cond:
            return [r for r in self.requests if r.method == method and r.path == path]

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
                for sock in (client, server):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets += [client, server]
                seen: list[Seen] = []  # this connection's one request
                threading.Thread(target=self._requests, args=(client, server, seen),
                                 daemon=True).start()
                threading.Thread(target=self._responses, args=(server, client, seen),
                                 daemon=True).start()

    @staticmethod
    def _head(src: socket.socket) -> tuple[bytes, bytes]:
        """Read up to the end of an HTTP head: (head, what came after it)."""
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = src.recv(65536)
            if not data:
                raise ConnectionError("closed before the end of the head")
            buffer += data
        end = buffer.index(b"\r\n\r\n") + 4
        return buffer[:end], buffer[end:]

    def _requests(self, src: socket.socket, dst: socket.socket, seen: list[Seen]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            head, rest = self._head(src)
            method, path, headers = parse_head(head)
            with self._cond:
                seen.append(Seen(method, path, headers))
                self.requests.append(seen[0])
                self._cond.notify_all()
            if self.hold is not None and path.startswith(self.hold):
                self.release.wait(30)
            dst.sendall(head + rest)
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _cut(self) -> bool:
        with self._cond:
            if self.max_cuts is not None and self.cuts >= self.max_cuts:
                return False
            self.cuts += 1
            self._cond.notify_all()
            return True

    def _responses(self, src: socket.socket, dst: socket.socket, seen: list[Seen]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            head, data = self._head(src)
            lines = [line for line in head.decode("latin-1").split("\r\n")[:-2]
                     if not line.lower().startswith("connection:")]
            with self._cond:
                if seen:
                    seen[0].status = int(lines[0].split(" ", 2)[1])
                self._cond.notify_all()
            streaming = any(line.lower().startswith("content-type:")
                            and "text/event-stream" in line.lower() for line in lines)
            dst.sendall(("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
            if streaming:
                self._stream(src, dst, data)
                return
            while True:
                dst.sendall(data)
                if not (data := src.recv(65536)):
                    break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _stream(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        marker = self.cut_marker or b""
        delivered = bytearray()
        with self._cond:
            self.delivered.append(delivered)
        while True:
            if not data:
                if not (data := src.recv(65536)):
                    break
                continue
            cut_at = None
            window = bytes(delivered[-64:]) + data  # a marker may be split across reads
            if marker and marker in window:
                cut_at = max(0, window.index(marker) - (len(window) - len(data)))
            elif self.cut_after is not None and len(delivered) + len(data) >= self.cut_after:
                cut_at = self.cut_after - len(delivered)
            if cut_at is not None and self._cut():
                dst.sendall(data[:cut_at])
                delivered += data[:cut_at]
                if self.cut_gate is not None:
                    self.cut_gate.wait(20)
                self._reset(dst, src)
                return
            step = self.slice_size or len(data)
            for i in range(0, len(data), step):
                dst.sendall(data[i:i + step])
                if self.slice_size:
                    time.sleep(0.002)
            delivered += data
            data = b""
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for sock in socks:
            # A reset, not a clean close: linger 0, and wake the other pump's
            # recv so the socket is released (and RST sent) now.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            sock.close()

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_connection_reset_mid_stream_is_marked_cut_off(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat(["before ", 0.3, "CUT-HERE", " after"]))
    proxy = Proxy(server.url, cut_marker=b"CUT-HERE")
    page.route("**/optimize-stream/*", stream_gone)
    try:
        open_page(page, proxy.url)
        start(page, "reset")
        expect_state(page, "cutoff")
        assert proxy.cuts == 1
        assert raw_text(page) == "before "
        expect(page.locator("#noticeText")).to_contain_text("Cut off")
    finally:
        proxy.close()


def test_an_http_error_names_its_field(server: RunningServer, page: Page) -> None:
    open_page(page, server)
    page.evaluate("""() => {
        const option = new Option('no-such-model', 'no-such-model');
        document.getElementById('modelSelect').append(option);
        document.getElementById('modelSelect').value = 'no-such-model';
    }""")
    start(page, "hello")
    expect(page.locator("#formError")).to_be_visible()
    expect(page.locator("#formError")).to_contain_text("no-such-model")
    expect(page.locator("#modelSelect")).to_have_attribute("aria-invalid", "true")
    expect_state(page, "error")


def test_models_are_listed_with_unusable_ones_disabled(server: RunningServer, page: Page) -> None:
    open_page(page, server)
    keyed = page.locator("#modelSelect option[value='keyed']")
    expect(keyed).to_be_disabled()
    expect(keyed).to_contain_text("set SCRIPTED_KEY")
    expect(page.locator("#modelSelect option[value='scripted']")).to_be_enabled()


# --- safety ---------------------------------------------------------------------


def test_hostile_model_output_runs_nothing_and_loads_nothing(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    remote = f"http://127.0.0.1:{upstream.port}"
    hostile: list[str | float | threading.Event] = [
        "# Report\n\n",
        "<img src=x onerror=\"window.__pwned.push('img')\">\n\n",
        "<script>window.__pwned.push('script')</script>\n\n",
        f"![tracker]({remote}/tracker.png)\n\n",
        "[click](javascript:window.__pwned.push('link'))\n\n",
        "<svg onload=\"window.__pwned.push('svg')\"></svg>\n\n",
        f"<iframe src=\"{remote}/frame\"></iframe>\n\n",
        "<style>body { display: none }</style>\n\n",
        "inline <b onmouseover=\"window.__pwned.push('b')\">bold</b> and ",
        f"<a href=\"{remote}/x\" onclick=\"window.__pwned.push('a')\">a link</a>\n\n",
        "```html\n<img src=x onerror=\"window.__pwned.push('code')\">\n```\n\n",
        "[a safe link](https://example.com/page)\n\n| left | right |\n|:---|---:|\n| 1 | 2 |\n",
    ]
    upstream.enqueue(Script.chat(hostile))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_page(page, server)
    start(page, "<img src=x onerror=\"window.__pwned.push('prompt')\"> in the prompt too")
    expect_state(page, "done")

    for tab in ("#tabRaw", "#tabDiff", "#tabRendered"):
        page.click(tab)
        page.wait_for_timeout(100)
    page.hover("#resultRendered")
    page.locator("#historyList .history-restore").first.click()
    page.wait_for_timeout(200)

    assert page.evaluate("window.__pwned") == []
    assert page.evaluate("window.__csp") == [], "the sanitizer, not the CSP, must stop it"
    for tag in ("img", "script", "svg", "iframe", "style", "object", "embed", "form"):
        assert page.locator(f"#result {tag}, #review {tag}, #historyList {tag}").count() == 0, tag
    assert page.locator("#result [onerror], #result [onclick], #result [style]").count() == 0
    assert page.locator("#result a[href^='javascript']").count() == 0
    # What is safe still renders: links open apart, tables keep their alignment.
    link = page.locator("#resultRendered a[href='https://example.com/page']")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(link).to_have_attribute("target", "_blank")
    expect(page.locator("#resultRendered td[align='right']")).to_have_text("2")
    expect(page.locator("#resultRendered")).to_contain_text("<script>window.__pwned.push('script')</script>")
    expect(page.locator("#resultRendered")).to_contain_text("[tracker]")
    assert not [url for url in requests if not url.startswith(server.url)], requests
    assert not [r.path for r in upstream.requests if "tracker" in r.path or "frame" in r.path]


# --- history, language, review, actions ---------------------------------------------


def test_history_survives_a_reload_and_restores_in_one_click(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat(["Result about cats."]), Script.chat(["Result about dogs."]))
    open_page(page, server)
    start(page, "Tell me about cats")
    expect_state(page, "done")
    page.select_option("#typeSelect", "shorten")
    page.fill("#openingInput", "Woof.")
    start(page, "Tell me about dogs")
    expect_state(page, "done")
    expect(page.locator("#historyList .history-item")).to_have_count(2)

    page.reload()
    open_page(page, server)
    items = page.locator("#historyList .history-item")
    expect(items).to_have_count(2)
    expect(page.locator("#historyCount")).to_have_text("2")
    expect(items.first).to_contain_text("Tell me about dogs")

    page.fill("#historySearch", "CATS")
    expect(items).to_have_count(1)
    page.fill("#historySearch", "")
    expect(items).to_have_count(2)

    items.nth(0).locator(".history-restore").click()
    expect(page.locator("#promptInput")).to_have_value("Tell me about dogs")
    expect(page.locator("#typeSelect")).to_have_value("shorten")
    expect(page.locator("#openingInput")).to_have_value("Woof.")
    expect(page.locator("#resultRaw")).to_have_text("Result about dogs.")
    expect_state(page, "done")
    expect(page.locator("#review")).to_be_visible()

    items.nth(1).locator(".history-delete").click()
    expect(items).to_have_count(1)
    page.reload()
    expect(page.locator("#historyList .history-item")).to_have_count(1)
    expect(page.locator("#historyList")).to_contain_text("dogs")


def test_the_language_follows_the_browser_and_switches(
    server: RunningServer, new_page: Callable[..., Page],
) -> None:
    page = open_page(new_page(locale="en-US"), server)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#startButton")).to_contain_text("Start")

    page.click("#langButton")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#startButton")).to_contain_text("开始")
    expect(page.locator("#stopButton")).to_contain_text("停止")
    options = page.locator("#typeSelect option").all_text_contents()
    assert options == ["优化", "扩写", "缩写"]
    expect(page.locator("label[for='promptInput']")).to_have_text("你的提示词")
    expect(page.locator("#historySearch")).to_have_attribute("placeholder", "搜索提示词和结果")

    page.reload()
    open_page(page, server)
    expect(page.locator("#startButton")).to_contain_text("开始")
    page.click("#langButton")
    expect(page.locator("#startButton")).to_contain_text("Start")

    chinese = open_page(new_page(locale="zh-CN"), server)
    expect(chinese.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(chinese.locator("#startButton")).to_contain_text("开始")


def test_the_review_lists_what_did_not_survive(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    upstream.enqueue(Script.chat(["您好，我是小助手。", "请在 24 小时内回复 {{name}}。"]))
    open_page(page, server)
    start(page, '你好 {{name}}，{{order}} 在 24 小时内回复，7 天内退款，说"谢谢"。',
          opening="您好，我是小助手。")
    expect_state(page, "done")
    review = page.locator("#review")
    expect(review).to_be_visible()
    checks = review.locator(".check")
    expect(checks.nth(0)).to_contain_text("→")
    expect(checks.nth(1)).to_contain_text("1 of 2 missing")
    expect(checks.nth(1).locator(".chip")).to_have_text(["{{order}}"])
    expect(checks.nth(2).locator(".chip")).to_have_text(["7"])
    expect(checks.nth(3).locator(".chip")).to_have_text(['"谢谢"'])
    expect(checks.nth(4)).to_contain_text("appears word for word")


def test_copy_and_use_as_new_input(
    server: RunningServer, upstream: UpstreamDouble, new_page: Callable[..., Page],
) -> None:
    upstream.enqueue(Script.chat(["Improved ", "prompt."]))
    page = open_page(new_page(permissions=["clipboard-read", "clipboard-write"]), server)
    start(page, "original prompt")
    expect_state(page, "done")
    page.click("#copyButton")
    expect(page.locator("#announcer")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == "Improved prompt."
    page.click("#reuseButton")
    expect(page.locator("#promptInput")).to_have_value("Improved prompt.")
    expect(page.locator("#promptInput")).to_be_focused()


def test_phone_width_has_no_horizontal_scroll(
    server: RunningServer, upstream: UpstreamDouble, new_page: Callable[..., Page],
) -> None:
    upstream.enqueue(Script.chat(["A long line " * 40, "\n\n```\n" + "x" * 300 + "\n```\n"]))
    page = open_page(new_page(width=375, height=740, is_mobile=True, has_touch=True), server)
    start(page, "phone")
    expect_state(page, "done")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_ten_thousand_tokens_stay_smooth(
    server: RunningServer, upstream: UpstreamDouble, page: Page,
) -> None:
    words = ["The", " model", " writes", " 流式", "输出", "，", " token", " by", " token", ".\n\n",
             "- item", " **bold**", " `code`", "\n## Heading\n"]
    pieces: list[str | float | threading.Event] = [words[i % len(words)] for i in range(10_000)]
    upstream.enqueue(Script.chat(pieces))
    # What happens to the raw text's nodes while it streams (not how long it takes:
    # that is for a benchmark on a quiet machine).
    page.add_init_script("""
    document.addEventListener('DOMContentLoaded', () => {
      window.__rawMutations = {added: 0, removed: 0};
      new MutationObserver((records) => {
        for (const r of records) {
          window.__rawMutations.added += r.addedNodes.length;
          window.__rawMutations.removed += r.removedNodes.length;
        }
      }).observe(document.getElementById('resultRaw'), {childList: true});
    });
    """)
    open_page(page, server)
    start(page, "long")
    expect(page.locator("#statTokens")).not_to_have_text("–")
    page.evaluate("window.__rawMutations = {added: 0, removed: 0}")  # from the first token on
    expect_state(page, "done", timeout=90_000)
    assert raw_text(page) == "".join(str(p) for p in pieces)
    expect(page.locator("#statTokens")).to_have_text("10,000")
    mutations = page.evaluate("window.__rawMutations")
    # Streaming appends text, a node per animation frame at most: it never
    # re-renders what is there, nor touches the page once per token.
    assert mutations["removed"] == 0 and 0 < mutations["added"] < 10_000 // 2, mutations


# --- the screenshot -----------------------------------------------------------------


SCREENSHOT_PROMPT = (
    "你是 {{shop}} 的客服助手。回答顾客关于订单、物流和退款的问题。"
    "24 小时内回复，超过 7 天的订单不能退款。语气要友好。"
)
SCREENSHOT_OUTPUT: list[str | float | threading.Event] = [
    "# 角色\n", "你是 **{{shop}}** 的", "在线客服助手，", "负责解答顾客关于",
    "订单、物流和退款的问题。\n\n",
    "## 开场白\n", "> 您好，欢迎光临", " {{shop}}！", "请问有什么可以帮您？\n\n",
    "## 规则\n", "1. **及时**：", "所有问题须在 24 小时内", "给出答复。\n",
    "2. **退款**：", "签收超过 7 天的订单", "不支持退款，", "请礼貌说明原因", "并提供替代方案。\n",
    "3. **语气**：", "友好、耐心、", "简洁，", "避免使用", "专业术语。\n", "4. **边界**", "：",
]


def test_screenshot_mid_stream(
    server: RunningServer, upstream: UpstreamDouble, page: Page, tmp_path: Path,
) -> None:
    """The page mid-stream, as docs/screenshot.png shows it.

    The committed image is rewritten only when asked
    (`PROMPTCAST_UPDATE_SCREENSHOT=1 make test`), so a test run leaves the
    checkout as it found it.
    """
    gate = upstream.gate()
    upstream.enqueue(Script.chat([*SCREENSHOT_OUTPUT, gate, "不清楚的问题转人工。"], gap=0.01))
    open_page(page, server)
    page.select_option("#typeSelect", "optimize")
    start(page, SCREENSHOT_PROMPT, opening="您好，欢迎光临 {{shop}}！请问有什么可以帮您？")
    expect(page.locator("#resultRaw")).to_have_text("".join(map(str, SCREENSHOT_OUTPUT)))
    # The Markdown render runs on a time budget, behind the raw text: the
    # picture waits for it to reach everything sent so far.
    expect(page.locator("#resultRendered ol li").last).to_have_text("边界：")
    expect_state(page, "streaming")
    update = os.environ.get("PROMPTCAST_UPDATE_SCREENSHOT") == "1"
    path = ROOT / "docs" / "screenshot.png" if update else tmp_path / "screenshot.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": 760})
    assert path.stat().st_size > 10_000
    gate.set()
    expect_state(page, "done")


def test_index_is_served_with_a_strict_csp(server: RunningServer, page: Page) -> None:
    response = page.goto(server.url + "/")
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    expect(page.locator("#modelSelect")).to_have_value("scripted")
    assert page.evaluate("window.__csp") == []
    assert page.evaluate("window.promptcast.running") is False
