"""`python -m promptcast ...` as a user runs it: what the terminal shows, and the exit status."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import PROXY_VARIABLES, RunningServer, free_port, models_file
from .upstream_double import Script, UpstreamDouble

# Keys set in the developer's environment would change what `models` prints.
NO_KEYS = {"DASHSCOPE_API_KEY": "", "OPENAI_API_KEY": "", "SCRIPTED_KEY": ""}
PROMPT = "You are a shop assistant."


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROMPTCAST_") and k.lower() not in PROXY_VARIABLES}
    env.update(NO_KEYS)
    # The CLI must flush each piece itself, not rely on an unbuffered interpreter.
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str], stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptcast", *args], env=env, input=stdin,
        capture_output=True, text=True, encoding="utf-8", timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path, upstream: UpstreamDouble) -> dict[str, str]:
    """The double's models (`scripted` without a key, `keyed` needing SCRIPTED_KEY)."""
    return cli_env(PROMPTCAST_MODELS_FILE=str(models_file(tmp_path, upstream)),
                   PROMPTCAST_DEFAULT_MODEL="scripted")


def rows(output: str) -> dict[str, list[str]]:
    table = {}
    for line in output.splitlines():
        name, provider, status = line.split(None, 2)
        table[name] = [provider, status]
    return table


# -- models ------------------------------------------------------------------

def test_models_lists_every_model_with_provider_and_status(env: dict[str, str]) -> None:
    result = run("models", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    table = rows(result.stdout)
    assert table.pop("MODEL") == ["PROVIDER", "STATUS"]
    assert table["scripted"] == ["openai", "ok (default)"]
    assert table["keyed"] == ["openai", "unavailable: set SCRIPTED_KEY"]
    for name in ("qwen-max", "qwen-plus", "qwen-turbo"):
        assert table[name] == ["openai", "unavailable: set DASHSCOPE_API_KEY"]
    for name in ("gpt-3.5-turbo", "gpt-4o-mini"):
        assert table[name] == ["openai", "unavailable: set OPENAI_API_KEY"]
    assert table["local"] == ["llama", "ok"]
    assert len(table) == 8


def test_models_shows_a_model_usable_once_its_key_is_set() -> None:
    result = run("models", env=cli_env(DASHSCOPE_API_KEY="sk-anything"))
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    # With a key the operator gave, that model becomes the default, not `local`.
    assert table["qwen-max"] == ["openai", "ok (default)"]
    assert table["qwen-plus"] == ["openai", "ok"]
    assert table["gpt-4o-mini"] == ["openai", "unavailable: set OPENAI_API_KEY"]
    assert table["local"] == ["llama", "ok"]
    assert "sk-anything" not in result.stdout


# -- optimize, in-process -------------------------------------------------------

def test_optimize_in_process_prints_the_streamed_text(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["Be", " friendly", " and", " brief", "."], gap=0.01))
    result = run("optimize", PROMPT, "--model", "scripted", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Be friendly and brief.\n"
    assert result.stderr == ""
    sent = upstream.requests[-1].json()
    assert sent["model"] == "scripted-upstream"
    assert PROMPT in sent["messages"][-1]["content"]


def test_optimize_reads_the_prompt_from_stdin_with_the_options(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    result = run("optimize", "-", "--type", "缩写", "--opening", "您好！", env=env,
                 stdin="你是一个客服助手，负责回答订单问题。")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!\n"
    system, user = upstream.requests[-1].json()["messages"]
    assert "请缩写" in system["content"]
    assert "你是一个客服助手，负责回答订单问题。" in user["content"]
    assert "您好！" in user["content"]


def test_optimize_unknown_model_is_a_clear_error(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    result = run("optimize", PROMPT, "--model", "gpt-9", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "unknown model 'gpt-9'" in result.stderr
    assert "scripted" in result.stderr
    assert "Traceback" not in result.stderr
    assert upstream.requests == []


def test_optimize_model_without_key_names_the_variable(env: dict[str, str]) -> None:
    result = run("optimize", PROMPT, "--model", "qwen-max", env=env)
    assert result.returncode == 1
    assert "DASHSCOPE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_optimize_upstream_drop_mid_stream_is_a_clear_error(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["partial", " answer"], then="drop"))
    result = run("optimize", PROMPT, env=env)
    assert result.returncode == 1
    assert result.stdout.startswith("partial answer")  # what had arrived stays on screen
    assert result.stderr == (
        "promptcast: the upstream of model 'scripted' dropped the connection mid-stream\n")
    assert "Traceback" not in result.stderr


def test_optimize_in_process_error_starts_on_its_own_line(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    # On a terminal stdout and stderr interleave: the partial text must end its line
    # before the message, as it does with --server.
    upstream.enqueue(Script.chat(["partial", " answer"], then="drop"))
    result = run("optimize", PROMPT, env=env)
    assert result.returncode == 1
    assert result.stdout == "partial answer\n"


def test_optimize_unreachable_upstream_is_a_clear_error(tmp_path: Path,
                                                        upstream: UpstreamDouble) -> None:
    path = models_file(tmp_path, upstream)
    upstream.stop()
    result = run("optimize", PROMPT, env=cli_env(PROMPTCAST_MODELS_FILE=str(path),
                                                  PROMPTCAST_DEFAULT_MODEL="scripted"))
    assert result.returncode == 1
    assert "cannot reach the upstream of model 'scripted'" in result.stderr
    assert "Traceback" not in result.stderr


# -- optimize --previous --feedback: iterating on a rewrite ---------------------------

REWRITE = "# Role\nYou are the shop's assistant.\n\n## Rules\n1. Be brief."


@pytest.mark.parametrize("through", ["in-process", "server"])
def test_optimize_revises_a_previous_rewrite_with_feedback(
    env: dict[str, str], upstream: UpstreamDouble, server: RunningServer, tmp_path: Path,
    through: str,
) -> None:
    previous = tmp_path / "v1.md"
    previous.write_text(REWRITE, encoding="utf-8")
    extra = ["--server", server.url] if through == "server" else []
    result = run("optimize", PROMPT, "--previous", str(previous),
                 "--feedback", "add a section on refunds", *extra, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!\n"
    system, user = upstream.requests[-1].json()["messages"]
    assert f"<prompt>\n{PROMPT}\n</prompt>" in user["content"]
    assert f"<rewrite>\n{REWRITE}\n</rewrite>" in user["content"]
    assert "<feedback>add a section on refunds</feedback>" in user["content"]
    assert "Revise that rewrite" in system["content"]


def test_optimize_previous_from_standard_input(
    env: dict[str, str], upstream: UpstreamDouble,
) -> None:
    result = run("optimize", PROMPT, "--previous", "-", "--feedback", "shorter",
                 env=env, stdin=REWRITE)
    assert result.returncode == 0, result.stderr
    assert f"<rewrite>\n{REWRITE}\n</rewrite>" in upstream.requests[-1].json()[
        "messages"][1]["content"]


@pytest.mark.parametrize(("args", "words"), [
    (["--feedback", "shorter"], "`previous` is required with `feedback`"),
    (["--previous", "{file}"], "`feedback` is required with `previous`"),
    (["--previous", "/nonexistent/v1.md", "--feedback", "x"],
     "cannot read previous file '/nonexistent/v1.md'"),
])
def test_optimize_bad_revision_is_a_clear_error(
    env: dict[str, str], upstream: UpstreamDouble, tmp_path: Path, args: list[str], words: str,
) -> None:
    previous = tmp_path / "v1.md"
    previous.write_text(REWRITE, encoding="utf-8")
    result = run("optimize", PROMPT, *[a.format(file=previous) for a in args], env=env)
    assert result.returncode == 1
    assert words in result.stderr
    assert "(field: previous)" in result.stderr or "(field: feedback)" in result.stderr
    assert "Traceback" not in result.stderr
    assert upstream.requests == []


def test_optimize_bad_revision_through_a_server_names_the_field(
    server: RunningServer, upstream: UpstreamDouble,
) -> None:
    result = run("optimize", PROMPT, "--feedback", "shorter", "--server", server.url,
                 env=cli_env())
    assert result.returncode == 1
    assert result.stderr.startswith("promptcast: 422: `previous` is required with `feedback`")
    assert upstream.requests == []


# -- optimize --server -----------------------------------------------------------

def test_optimize_through_a_server_prints_the_text(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["Via", " the", " server"]))
    # The CLI has no models of its own: the server's default (`scripted`) applies.
    result = run("optimize", PROMPT, "--server", server.url, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Via the server\n"
    assert upstream.requests[-1].json()["model"] == "scripted-upstream"


def test_optimize_through_a_server_unknown_model(server: RunningServer) -> None:
    result = run("optimize", PROMPT, "--server", server.url, "--model", "gpt-9",
                 env=cli_env())
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("promptcast: 404: unknown model 'gpt-9'")
    assert "scripted" in result.stderr


def test_optimize_through_a_server_drop_mid_stream(
    server: RunningServer, upstream: UpstreamDouble
) -> None:
    upstream.enqueue(Script.chat(["partial"], then="drop"))
    result = run("optimize", PROMPT, "--server", server.url, env=cli_env())
    assert result.returncode == 1
    assert result.stdout == "partial\n"
    assert result.stderr == (
        "promptcast: error: the upstream of model 'scripted' dropped the connection "
        "mid-stream\n")


def test_optimize_through_no_server() -> None:
    result = run("optimize", PROMPT, "--server", f"http://127.0.0.1:{free_port()}",
                 env=cli_env())
    assert result.returncode == 1
    assert result.stderr.startswith("promptcast: cannot reach the server")


def test_the_terminal_shows_each_piece_as_it_arrives(
    env: dict[str, str], upstream: UpstreamDouble
) -> None:
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["first piece", gate, " second piece"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptcast", "optimize", PROMPT], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + 30
        while b"first piece" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if ready:
                part = os.read(fd, 4096)
                if not part:
                    break
                seen += part
        # The upstream is holding the rest: what we see was printed as it came.
        assert seen == b"first piece"
        assert proc.poll() is None
        gate.set()
        rest, err = proc.communicate(timeout=30)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert seen + rest == b"first piece second piece\n"


# -- configuration and help ---------------------------------------------------------

@pytest.mark.parametrize("command", [["models"], ["optimize", PROMPT], ["serve", "--port", "0"]])
def test_bad_settings_exit_2_naming_the_variable(command: list[str]) -> None:
    result = run(*command, env=cli_env(PROMPTCAST_IDLE_TIMEOUT="abc"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "PROMPTCAST_IDLE_TIMEOUT" in result.stderr and "'abc'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"PROMPTCAST_TOTAL_TIMEOUT": "-1"}, "PROMPTCAST_TOTAL_TIMEOUT"),
        ({"PROMPTCAST_DEFAULT_MODEL": "nope"}, "PROMPTCAST_DEFAULT_MODEL"),
        ({"PROMPTCAST_MODELS_FILE": "/nonexistent/models.toml"}, "/nonexistent/models.toml"),
    ],
)
def test_other_bad_settings_exit_2(environ: dict[str, str], words: str) -> None:
    result = run("models", env=cli_env(**environ))
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_is_a_usage_error() -> None:
    result = run("serve", "--idle-timeout", "abc", env=cli_env())
    assert result.returncode == 2
    assert "--idle-timeout" in result.stderr


def test_serve_help_documents_the_flags() -> None:
    result = run("serve", "--help", env=cli_env())
    assert result.returncode == 0
    for flag in ("--host", "--port", "--models", "--upstream", "--first-token-timeout",
                 "--idle-timeout", "--total-timeout", "--heartbeat-interval"):
        assert flag in result.stdout, flag


def test_optimize_help_documents_the_options() -> None:
    result = run("optimize", "--help", env=cli_env())
    assert result.returncode == 0
    for flag in ("--type", "--model", "--opening", "--server", "--previous", "--feedback"):
        assert flag in result.stdout, flag
    assert "optimize" in result.stdout and "expand" in result.stdout
