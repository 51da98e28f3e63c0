"""Evaluations with the library, against a real server on a real SQLite file and a real
PostgreSQL database: a run from a saved test set (by name or id, for its owner only), and a
finished run kept as an evaluation and a run record, off the run's path."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptcast.evals.records import TEXT_CHARS
from promptcast.wire.sse import Decoder, Event

from . import test_library_replicas
from .conftest import PostgresServer, RunningServer
from .eval_double import EvalUpstream
from .upstream_double import UpstreamDouble

# test_library_replicas.py's cluster that a test may stop and start, used here too.
own_postgres = test_library_replicas.own_postgres

V1 = "BOT v1\nYou are the support bot of an online shop."
V2 = "BOT v2\nYou are the support bot of {{shop}}. Be brief."
LONG = "很长的回答。" * 600  # 3,600 characters: kept cut to TEXT_CHARS
CASES: list[dict[str, Any]] = [
    {"id": "refund", "message": "Can I get a refund?", "contains": "refund",
     "vars": {"shop": "Acme"}},
    {"id": "hi", "message": "Hi", "vars": {"shop": "Acme"}},
]
ANSWERS = {
    ("BOT v1", "Can I get a refund?"): "We can refund you. [score=6][rank=1]",
    ("BOT v1", "Hi"): LONG + " [score=3][rank=0]",
    ("BOT v2", "Can I get a refund?"): "Acme will refund you. [score=9][rank=3]",
    ("BOT v2", "Hi"): "Hi from Acme [score=8][rank=1]",
}
PROMPTS = [{"name": "v1", "text": V1}, {"name": "v2", "text": V2}]
ALICE = "alice:pc-alice-0123456789"
BOB = "bob:pc-bob-9876543210"


@pytest.fixture
def library(serve: Callable[..., RunningServer], database_url: str,
            upstream: UpstreamDouble) -> RunningServer:
    upstream.responder = EvalUpstream(ANSWERS)
    return serve(database_url=database_url)


@pytest.fixture
def client(library: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=library.url, timeout=30) as c:
        yield c


def events(response: httpx.Response) -> list[Event]:
    return list(Decoder().feed(response.content))


def payloads(got: list[Event], kind: str) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in got if e.event == kind]


def run(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/eval", json={"prompts": PROMPTS, "model": "scripted",
                                      "judge": "scripted", **body})


def save_testset(client: httpx.Client, name: str = "电商",
                 cases: list[dict[str, Any]] = CASES) -> dict[str, Any]:
    response = client.post("/api/testsets", json={"name": name, "cases": cases})
    assert response.status_code == 201, response.text
    testset: dict[str, Any] = response.json()
    return testset


def wait_for(client: httpx.Client, path: str, **params: str) -> httpx.Response:
    """GET `path` until it answers 200: what the server writes off a stream's path lands later."""
    for _ in range(1200):
        response = client.get(path, params=params)
        if response.status_code == 200:
            return response
        threading.Event().wait(0.025)
    raise AssertionError(f"{path} never appeared: {response.status_code} {response.text}")


def wait_for_items(client: httpx.Client, path: str, n: int, **params: str
                   ) -> list[dict[str, Any]]:
    for _ in range(600):
        items: list[dict[str, Any]] = client.get(path, params=params).json()["items"]
        if len(items) >= n:
            return items
        threading.Event().wait(0.025)
    raise AssertionError(f"{path} never had {n} item(s): {items}")


# ---------------------------------------------------------------- a saved test set


def test_a_saved_test_set_runs_by_name_or_id_and_its_result_is_kept(
        client: httpx.Client, upstream: UpstreamDouble) -> None:
    testset = save_testset(client)
    by_name = run(client, testset="电商", pairwise=True)
    assert by_name.status_code == 200, by_name.text
    got = events(by_name)
    assert got[-1].data == "[DONE]" and len(payloads(got, "cell")) == 4
    summary = payloads(got, "summary")[0]
    assert summary["cases"] == 2 and summary["prompts"][1]["rules"]["passed"] == 1
    # The saved cases' own variables filled the prompt.
    systems = {r.messages()[0]["content"] for r in upstream.requests if r.body}
    assert "BOT v2\nYou are the support bot of Acme. Be brief." in systems

    # Kept as an evaluation whose id is the stream's, linked to its test set.
    run_id = by_name.headers["x-stream-id"]
    kept = wait_for(client, f"/api/evaluations/{run_id}").json()
    assert kept["name"] == "电商" and kept["testset"] == testset["id"]
    assert (kept["model"], kept["judge"]) == ("scripted", "scripted")
    assert kept["summary"] == summary
    streamed = [{"event": e.event, **json.loads(e.data)} for e in got
                if e.event in ("cell", "judgement")]
    assert [(c["event"], c.get("prompt"), c["case"]) for c in kept["cells"]] == [
        (c["event"], c.get("prompt"), c["case"]) for c in streamed]
    long_cell = next(c for c in kept["cells"]
                     if (c["event"], c.get("prompt"), c["case"]) == ("cell", "v1", 1))
    assert long_cell["text"] == ANSWERS[("BOT v1", "Hi")][:TEXT_CHARS]
    assert long_cell["truncated"] is True
    short = next(c for c in kept["cells"]
                 if (c["event"], c.get("prompt"), c["case"]) == ("cell", "v2", 0))
    assert short["text"] == "Acme will refund you. [score=9][rank=3]" and "truncated" not in short
    assert any("pair" in c and c["winner"] == "v2" for c in kept["cells"])

    # And as a run of kind "eval": its request, outcome, usage and headline figures.
    record = wait_for(client, f"/api/runs/{run_id}").json()
    assert record["kind"] == "eval" and record["outcome"] == "done"
    assert record["request"] == {"prompts": PROMPTS, "model": "scripted", "judge": "scripted",
                                 "pairwise": True, "concurrency": 4, "cases": 2,
                                 "testset": testset["id"]}
    tokens = [p["tokens"] for p in summary["prompts"]] + [summary["judge_usage"]["tokens"]]
    assert record["usage"] == {"prompt_tokens": sum(t["prompt"] for t in tokens),
                               "completion_tokens": sum(t["completion"] for t in tokens)}
    assert record["text"].splitlines()[1].startswith("v2: rules 1/1, judge 8.5")
    assert [r["id"] for r in client.get("/api/runs", params={"kind": "eval"}).json()[
        "items"]] == [run_id]

    # By id too; both evaluations are listed under their test set.
    by_id = run(client, testset=testset["id"], judge=False)
    assert by_id.status_code == 200 and events(by_id)[-1].data == "[DONE]"
    wait_for(client, f"/api/evaluations/{by_id.headers['x-stream-id']}")
    listed = client.get("/api/evaluations", params={"testset": testset["id"]}).json()["items"]
    assert {e["id"] for e in listed} == {run_id, by_id.headers["x-stream-id"]}


def test_cases_or_a_test_set_exactly_one_and_a_bad_saved_set_is_named(
        client: httpx.Client, upstream: UpstreamDouble) -> None:
    twins = [save_testset(client, "twice")["id"] for _ in range(2)]
    save_testset(client, "typo", [{"message": "ok"}, {"message": "x", "contain": "y"}])
    save_testset(client, "unfilled", [{"message": "ok"}])
    for body, status, field, words in [
        ({"testset": "电商", "cases": CASES}, 422, "testset", "not both"),
        ({}, 422, "cases", "`testset`"),
        ({"testset": ""}, 422, "testset", "name or id"),
        ({"testset": 7}, 422, "testset", "name or id"),
        ({"testset": "nope"}, 404, "testset", "no test set named 'nope'"),
        ({"testset": "twice"}, 422, "testset", "2 test sets are named 'twice'"),
        ({"testset": "typo"}, 422, "testset", "case 1 (`contain`)"),
        ({"testset": "unfilled"}, 422, "testset", "{{shop}}"),
    ]:
        response = run(client, **body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field and words in error["message"], (body, error)
        if body.get("testset") == "twice":
            assert all(tid in error["message"] for tid in twins)
    assert upstream.requests == []  # nothing started


def test_a_test_set_is_found_only_for_its_owner(
        serve: Callable[..., RunningServer], database_url: str,
        upstream: UpstreamDouble) -> None:
    upstream.responder = EvalUpstream(ANSWERS)
    server = serve(database_url=database_url, api_keys=f"{ALICE},{BOB}")
    key = {name: {"Authorization": f"Bearer {k.split(':')[1]}"}
           for name, k in (("alice", ALICE), ("bob", BOB))}
    with (httpx.Client(base_url=server.url, headers=key["alice"], timeout=30) as alice,
          httpx.Client(base_url=server.url, headers=key["bob"], timeout=30) as bob):
        testset = save_testset(alice, "alice's")
        for ref in (testset["id"], "alice's"):
            refused = run(bob, testset=ref)
            assert refused.status_code == 404 and refused.json()["error"]["field"] == "testset"
        assert upstream.requests == []
        ran = run(alice, testset=testset["id"], judge=False)
        assert ran.status_code == 200 and events(ran)[-1].data == "[DONE]"
        run_id = ran.headers["x-stream-id"]
        assert wait_for(alice, f"/api/evaluations/{run_id}").json()["testset"] == testset["id"]
        wait_for(alice, f"/api/runs/{run_id}")
        assert bob.get(f"/api/evaluations/{run_id}").status_code == 404
        assert bob.get("/api/runs", params={"kind": "eval"}).json()["items"] == []


def test_without_a_library_a_test_set_is_a_404_that_says_so(
        server: RunningServer, upstream: UpstreamDouble) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = run(client, testset="电商")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "library_off"
    assert response.json()["error"]["field"] == "testset"
    assert upstream.requests == []


# ---------------------------------------------------------------- what is kept, and when


def test_a_stopped_run_is_a_cancelled_run_record_and_no_evaluation(
        client: httpx.Client, upstream: UpstreamDouble) -> None:
    upstream.responder = EvalUpstream(ANSWERS, hang=True)
    with client.stream("POST", "/eval", json={
            "prompts": PROMPTS, "cases": CASES, "model": "scripted", "judge": False,
            "deltas": True}) as response:
        assert response.status_code == 200
        stopped = response.headers["x-stream-id"]
        decoder = Decoder()
        for chunk in response.iter_bytes():
            if any(e.event == "delta" for e in decoder.feed(chunk)):
                break  # an answer is streaming: leave
    record = wait_for(client, f"/api/runs/{stopped}").json()
    assert record["kind"] == "eval" and record["outcome"] == "cancelled"
    assert record["text"] == "" and record["request"]["cases"] == 2
    # A later run that finishes is kept; the stopped one never is.
    upstream.responder = EvalUpstream(ANSWERS)
    finished = run(client, cases=CASES, judge=False)
    assert events(finished)[-1].data == "[DONE]"
    wait_for(client, f"/api/evaluations/{finished.headers['x-stream-id']}")
    assert [e["id"] for e in client.get("/api/evaluations").json()["items"]] == [
        finished.headers["x-stream-id"]]
    assert client.get(f"/api/evaluations/{stopped}").status_code == 404


def test_a_run_past_its_time_limit_is_a_timeout_run_record_with_its_message(
        serve: Callable[..., RunningServer], tmp_path: Path, upstream: UpstreamDouble) -> None:
    upstream.responder = EvalUpstream(ANSWERS, hang=True)
    server = serve(database_url=f"sqlite:///{tmp_path / 'timeout.db'}", eval_timeout=1.5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ran = run(client, cases=CASES, judge=False)
        assert events(ran)[-1].event == "timeout"
        record = wait_for(client, f"/api/runs/{ran.headers['x-stream-id']}").json()
        assert record["outcome"] == "timeout" and record["error"]["code"] == "timeout"
        assert record["error"]["message"] == json.loads(events(ran)[-1].data)["message"]
        assert client.get("/api/evaluations").json()["items"] == []


def test_with_run_records_off_a_finished_run_is_still_kept(
        serve: Callable[..., RunningServer], database_url: str,
        upstream: UpstreamDouble) -> None:
    upstream.responder = EvalUpstream(ANSWERS)
    server = serve(database_url=database_url, record_runs=False)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ran = run(client, cases=CASES, judge=False)
        assert events(ran)[-1].data == "[DONE]"
        kept = wait_for(client, f"/api/evaluations/{ran.headers['x-stream-id']}").json()
        assert kept["name"] == "v1 vs v2" and kept["testset"] is None
        assert client.get("/api/runs").json()["items"] == []


def test_when_the_database_is_down_a_run_still_ends_and_is_kept_once_it_is_back(
        serve: Callable[..., RunningServer], own_postgres: PostgresServer,
        upstream: UpstreamDouble) -> None:
    upstream.responder = EvalUpstream(ANSWERS)
    server = serve(database_url=own_postgres.url())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        own_postgres.stop()
        ran = run(client, cases=CASES, judge=False)
        assert ran.status_code == 200
        got = events(ran)
        assert got[-1].data == "[DONE]" and len(payloads(got, "summary")) == 1
        run_id = ran.headers["x-stream-id"]
        own_postgres.start()
        kept = wait_for(client, f"/api/evaluations/{run_id}").json()
        assert kept["summary"] == payloads(got, "summary")[0]
        assert wait_for(client, f"/api/runs/{run_id}").json()["outcome"] == "done"
