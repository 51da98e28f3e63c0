"""`promptcast try` as a user runs it: one or two prompts answering a message, labelled."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import RunningServer
from .test_cli import cli_env, run
from .upstream_double import Script, Seen, UpstreamDouble, echo_system, system_prompt

ORIGINAL = "你是 {{shop}} 的客服助手，回答订单问题。"
REWRITE = "# 角色\n你是 {{ shop }} 的客服助手。\n\n## 规则\n1. 先确认订单号。"
MESSAGE = "我的订单三天了还没发货，能退款吗？"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    original, rewrite = tmp_path / "original.txt", tmp_path / "rewrite.md"
    original.write_text(ORIGINAL, encoding="utf-8")
    rewrite.write_text(REWRITE, encoding="utf-8")
    return original, rewrite


@pytest.fixture
def env(tmp_path: Path, upstream: UpstreamDouble) -> dict[str, str]:
    from .conftest import models_file

    upstream.respond = echo_system
    return cli_env(PROMPTCAST_MODELS_FILE=str(models_file(tmp_path, upstream)),
                   PROMPTCAST_DEFAULT_MODEL="scripted")


def test_one_prompt_answers_with_variables_filled_and_the_opening_first(
    env: dict[str, str], upstream: UpstreamDouble, files: tuple[Path, Path],
) -> None:
    result = run("try", str(files[0]), "--message", MESSAGE, "--var", "shop=小张的店",
                 "--opening", "您好，请问有什么可以帮您？", env=env)
    assert result.returncode == 0, result.stderr
    filled = "你是 小张的店 的客服助手，回答订单问题。"
    assert result.stdout == f"[opening] 您好，请问有什么可以帮您？\n{filled}\n"
    assert result.stderr == ""
    assert upstream.requests[-1].json()["messages"] == [
        {"role": "system", "content": filled},
        {"role": "assistant", "content": "您好，请问有什么可以帮您？"},
        {"role": "user", "content": MESSAGE},
    ]


def test_the_prompt_can_come_from_standard_input(
    env: dict[str, str], upstream: UpstreamDouble,
) -> None:
    result = run("try", "-", "--message", "hi", env=env, stdin="You are terse.")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You are terse.\n"
    assert [m["role"] for m in upstream.requests[-1].json()["messages"]] == ["system", "user"]


def test_two_prompts_stream_at_once_and_print_labelled_in_turn(
    server: RunningServer, upstream: UpstreamDouble, files: tuple[Path, Path],
) -> None:
    gate = threading.Event()
    # Each answer's first chunk goes out at once, the rest waits: both requests are
    # open together before either can finish.
    upstream.respond = lambda seen: echo_system(seen, gate=gate)
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptcast", "try", str(files[0]), "--against", str(files[1]),
         "--message", MESSAGE, "--var", "shop=ACME", "--server", server.url],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert upstream.wait_for(lambda: len(upstream.requests) == 2, timeout=30)
        assert upstream.completed == 0
        gate.set()
        out, err = proc.communicate(timeout=60)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    first = "你是 ACME 的客服助手，回答订单问题。"
    second = "# 角色\n你是 ACME 的客服助手。\n\n## 规则\n1. 先确认订单号。"
    assert out.decode() == (f"── {files[0]} ──\n{first}\n\n── {files[1]} ──\n{second}\n")
    assert sorted(system_prompt(seen) for seen in upstream.requests) == sorted([first, second])


def test_a_failing_prompt_leaves_the_other_answering(
    env: dict[str, str], upstream: UpstreamDouble, files: tuple[Path, Path],
) -> None:
    def respond(seen: Seen) -> Script:
        if "规则" in system_prompt(seen):
            return Script.chat(["部分"], then="drop")
        return echo_system(seen)

    upstream.respond = respond
    result = run("try", str(files[0]), "--against", str(files[1]), "--message", MESSAGE,
                 "--var", "shop=ACME", env=env)
    assert result.returncode == 1
    assert result.stdout == (f"── {files[0]} ──\n你是 ACME 的客服助手，回答订单问题。\n\n"
                             f"── {files[1]} ──\n部分\n")
    assert result.stderr.startswith(f"promptcast: [{files[1]}] ")
    assert "dropped the connection" in result.stderr


def test_unfilled_variables_are_named_and_nothing_is_sent(
    env: dict[str, str], upstream: UpstreamDouble, files: tuple[Path, Path],
) -> None:
    result = run("try", str(files[0]), "--message", MESSAGE, env=env)
    assert result.returncode == 1
    assert "unfilled variables: {{shop}}" in result.stderr
    assert "--var shop=..." in result.stderr
    assert upstream.requests == []


@pytest.mark.parametrize("through", ["in-process", "server"])
def test_an_unknown_model_is_refused_and_nothing_is_sent(
    env: dict[str, str], upstream: UpstreamDouble, server: RunningServer,
    files: tuple[Path, Path], through: str,
) -> None:
    extra = ["--server", server.url] if through == "server" else []
    result = run("try", str(files[0]), "--var", "shop=x", "--message", "hi", "--model", "gpt-9",
                 *extra, env=env)
    assert result.returncode == 1
    assert "unknown model 'gpt-9'" in result.stderr
    if through == "server":
        assert "404" in result.stderr
    assert "Traceback" not in result.stderr
    assert upstream.requests == []


@pytest.mark.parametrize(("args", "words"), [
    (["--var", "shop"], "--var takes NAME=VALUE, not 'shop'"),
    (["--against", "/nonexistent.md", "--var", "shop=x"], "cannot read against file"),
])
def test_bad_arguments_are_clear_errors(
    env: dict[str, str], upstream: UpstreamDouble, files: tuple[Path, Path],
    args: list[str], words: str,
) -> None:
    result = run("try", str(files[0]), "--message", "hi", *args, env=env)
    assert result.returncode == 1
    assert words in result.stderr
    assert upstream.requests == []


def test_try_help_documents_the_options() -> None:
    result = run("try", "--help", env=cli_env())
    assert result.returncode == 0
    for flag in ("PROMPT_FILE", "--message", "--against", "--model", "--var", "--opening",
                 "--server"):
        assert flag in result.stdout, flag
