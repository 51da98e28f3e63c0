"""The loop guard: a line's third copy never reaches the reader; and the real embedded model,
on the seed's own example, writes no line three times and echoes none of its quote tags."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator

import pytest

from promptcast.providers.repetition import LoopGuard
from promptcast.settings import Settings

from .conftest import RunningServer, start_server
from .sse_client import post_stream


def stream(pieces: list[str], guard: LoopGuard | None = None) -> tuple[str, bool]:
    """What a reader gets of `pieces` through a guard, and whether it stopped them."""
    guard = guard or LoopGuard()
    out = []
    for piece in pieces:
        passed = guard.feed(piece)
        if passed is None:
            return "".join(out), True
        out.append(passed)
    return "".join(out) + guard.flush(), False


def test_the_third_copy_of_a_sentence_is_never_shown() -> None:
    text, stopped = stream(["你是一个客服助手，", "负责回答问题。", "你是一个",
                            "客服助手，负责回答问题。", "你是", "一个客服助手，负责", "回答问题。",
                            "还有别的"])
    assert stopped
    assert text == "你是一个客服助手，负责回答问题。你是一个客服助手，负责回答问题。"


def test_numbered_copies_are_copies() -> None:
    pieces = ["1. Be kind to customers.", "\n2. Be kind to customers.", "\n3. Be kind",
              " to users.", "\n4. Be kind to customers.\n", "5. more"]
    text, stopped = stream(pieces)
    assert stopped
    assert text.count("Be kind to customers.") == 2
    assert "Be kind to users." in text


def test_a_held_back_line_is_let_go_once_it_differs() -> None:
    guard = LoopGuard()
    assert guard.feed("Answer in English.\nAnswer in English.\n") == (
        "Answer in English.\nAnswer in English.\n")
    # The start of a third copy waits...
    assert guard.feed("Answer in") == ""
    # ...and goes out as soon as it is something else.
    assert guard.feed(" French.\n") == "Answer in French.\n"
    assert not guard.stopped


def test_what_is_held_at_the_end_is_let_go() -> None:
    text, stopped = stream(["Say hello twice.\n", "Say hello twice.\n", "Say hello"])
    assert not stopped
    assert text == "Say hello twice.\nSay hello twice.\nSay hello"


@pytest.mark.parametrize("text", [
    # Headings and markers; two copies are not a loop; short lines are no loop at all.
    "## 规则\n1. 语气友好。\n## 示例\n1. 语气友好地回答。\n## 注意\n",
    "Price: 3.5 dollars. Price: 3.5 dollars.\nOK.\nOK.\nOK.\n",
    "---\n---\n---\n| a | b |\n",
])
def test_ordinary_text_passes_untouched(text: str) -> None:
    assert stream([text[i:i + 3] for i in range(0, len(text), 3)]) == (text, False)


def test_after_stopping_it_passes_nothing() -> None:
    guard = LoopGuard(limit=2)
    assert guard.feed("同一句话说两遍。") == "同一句话说两遍。"
    assert guard.feed("同一句话说两遍。") is None
    assert guard.feed("more") is None


# --- the real embedded model ---------------------------------------------------------------

SEED = {
    "prompt": "你是一个电商平台的客服助手，负责回答用户关于订单、物流和退换货的问题。"
              "回答要简洁、礼貌，不知道的问题要转人工客服。",
    "opening": "您好，欢迎光临！请问有什么可以帮您？",
    "model": "local",
}


@pytest.fixture(scope="module")
def local_server() -> Iterator[RunningServer]:
    server = start_server(Settings.from_env({}))
    yield server
    server.stop()


def repeated_lines(text: str) -> dict[str, int]:
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    counts = collections.Counter(line for line in lines if len(line) >= 8)
    return {line: n for line, n in counts.items() if n >= 3}


@pytest.mark.llama
@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["optimize", "expand"])
async def test_the_local_model_repeats_no_line_three_times_on_the_seed_example(
    local_server: RunningServer, mode: str,
) -> None:
    got = await post_stream(f"{local_server.url}/optimize-stream", {**SEED, "type": mode})
    assert got.status == 200
    assert got.terminal.data == "[DONE]"
    assert repeated_lines(got.content) == {}, got.content
    assert not re.search(r"</?(?:prompt|opening)>", got.content), got.content
