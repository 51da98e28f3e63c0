"""`promptcast eval` as a user runs it: a subprocess, on the scripted upstream (in-process, and
through a running server with --server)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import RunningServer
from .eval_double import EvalUpstream
from .test_cli import cli_env, run
from .test_eval_api import ANSWERS, CASES, V1, V2
from .upstream_double import UpstreamDouble

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "v1.txt").write_text(V1, encoding="utf-8")
    (tmp_path / "v2.txt").write_text(V2, encoding="utf-8")
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    return {"v1": tmp_path / "v1.txt", "v2": tmp_path / "v2.txt", "cases": cases,
            "out": tmp_path / "out.json"}


@pytest.fixture
def eval_env(tmp_path: Path, upstream: UpstreamDouble) -> dict[str, str]:
    from .conftest import models_file
    upstream.responder = EvalUpstream(ANSWERS)
    return cli_env(PROMPTCAST_MODELS_FILE=str(models_file(tmp_path, upstream)),
                   PROMPTCAST_DEFAULT_MODEL="scripted")


def args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["eval", "--prompt", str(files["v1"]), "--prompt", str(files["v2"]),
            "--cases", str(files["cases"]), "--model", "scripted", "--judge", "scripted",
            "--var", "shop=Acme", *extra]


def test_eval_shows_a_table_and_writes_every_cell_to_json(
    files: dict[str, Path], eval_env: dict[str, str]
) -> None:
    done = run(*args(files, "--pairwise", "--json", str(files["out"])), env=eval_env)
    assert done.returncode == 0, done.stderr
    assert "evaluating" in done.stderr  # rich's progress bar, on stderr
    table = done.stdout
    assert "v1" in table and "v2" in table and "66.7 % (2/3)" in table and "7.25" in table
    record = json.loads(files["out"].read_text())
    assert len(record["cells"]) == 8 and len(record["judgements"]) == 12
    assert record["summary"]["prompts"][1]["rules"]["pass_rate"] == 1.0
    assert record["prompts"] == ["v1", "v2"] and record["cases"][0]["contains"] == "refund"


def test_thresholds_missed_exit_3_and_met_exit_0(
    files: dict[str, Path], eval_env: dict[str, str]
) -> None:
    # v2 (the last, the candidate) passes every rule and wins 2 of 3 comparisons.
    met = run(*args(files, "--pairwise", "--min-pass-rate", "1", "--min-win-rate", "0.6"),
              env=eval_env)
    assert met.returncode == 0, met.stderr
    missed = run(*args(files, "--pairwise", "--min-win-rate", "0.7"), env=eval_env)
    assert missed.returncode == 3
    assert "v2: win rate 66.7 % < 70.0 %" in missed.stderr
    no_pairs = run(*args(files, "--min-win-rate", "0.5"), env=eval_env)
    assert no_pairs.returncode == 2 and "--min-win-rate needs --pairwise" in no_pairs.stderr


def test_a_malformed_test_set_names_the_line(
    files: dict[str, Path], eval_env: dict[str, str]
) -> None:
    files["cases"].write_text('{"message": "ok"}\n\n{"message": "x", "max_chars": -1}\n',
                              encoding="utf-8")
    done = run(*args(files), env=eval_env)
    assert done.returncode == 2
    assert "cases.jsonl: line 3: `max_chars` must be a positive whole number" in done.stderr


def test_eval_through_a_server(
    files: dict[str, Path], eval_env: dict[str, str], serve: Callable[..., RunningServer]
) -> None:
    server = serve()
    done = run(*args(files, "--server", server.url, "--json", str(files["out"])), env=eval_env)
    assert done.returncode == 0, done.stderr
    record = json.loads(files["out"].read_text())
    assert len(record["cells"]) == 8 and record["summary"]["judge"] == "scripted"
    bad = run(*args(files, "--server", server.url, "--concurrency", "99"), env=eval_env)
    assert bad.returncode == 1 and "422" in bad.stderr and "concurrency" in bad.stderr


def test_eval_through_a_server_on_a_saved_test_set(
    files: dict[str, Path], eval_env: dict[str, str], serve: Callable[..., RunningServer],
    tmp_path: Path
) -> None:
    server = serve(database_url=f"sqlite:///{tmp_path / 'cli.db'}", api_keys="team:pc-cli-key-1")
    key = {"Authorization": "Bearer pc-cli-key-1"}
    saved = httpx.post(f"{server.url}/api/testsets", headers=key,
                       json={"name": "support", "cases": CASES}).json()
    prompts = ["--prompt", str(files["v1"]), "--prompt", str(files["v2"])]
    common = [*prompts, "--model", "scripted", "--var", "shop=Acme", "--server", server.url,
              "--api-key", "pc-cli-key-1"]
    done = run("eval", *common, "--judge", "scripted", "--testset", "support", "--json",
               str(files["out"]), env=eval_env)
    assert done.returncode == 0, done.stderr
    assert "66.7 % (2/3)" in done.stdout and "7.25" in done.stdout
    record = json.loads(files["out"].read_text())
    assert record["testset"] == "support" and "cases" not in record
    assert len(record["cells"]) == 8
    by_id = run("eval", *common, "--no-judge", "--testset", saved["id"], env=eval_env)
    assert by_id.returncode == 0, by_id.stderr
    unknown = run("eval", *common, "--testset", "nope", env=eval_env)
    assert unknown.returncode == 1 and "404" in unknown.stderr and "testset" in unknown.stderr
    # A saved test set lives on a server: without --server there is none to read.
    local = run("eval", *prompts, "--testset", "support", env=eval_env)
    assert local.returncode == 2 and "--server" in local.stderr
    both = run("eval", *prompts, "--testset", "support", "--cases", str(files["cases"]),
               env=eval_env)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_the_example_sets_load(eval_env: dict[str, str], tmp_path: Path) -> None:
    # Only the load: a run of them needs a real model (docs/eval.md shows one).
    for name in ("zh-ecommerce.yaml", "en-ecommerce.jsonl"):
        done = run("eval", "--prompt", str(ROOT / "examples/prompts/zh-support-v2.txt"),
                   "--cases", str(ROOT / "examples/testsets" / name), "--model", "nope",
                   env=eval_env)
        # The set is read and the prompt's placeholders are filled by it; the model is not.
        assert done.returncode == 1 and "unknown model 'nope'" in done.stderr, done.stderr
