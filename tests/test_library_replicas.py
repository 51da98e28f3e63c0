"""The library under replicas and faults: real promptcast processes, a real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import PostgresServer, Process, RunningServer, free_port, models_file
from .upstream_double import Script, UpstreamDouble


def _env(tmp_path: Path, upstream: UpstreamDouble, url: str, **extra: str) -> dict[str, str]:
    return {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
            "PROMPTCAST_DEFAULT_MODEL": "scripted", "PROMPTCAST_DATABASE_URL": url, **extra}


def test_two_replicas_on_one_postgresql_share_the_library_and_number_versions_in_order(
        tmp_path: Path, upstream: UpstreamDouble, postgres_url: str,
        processes: Callable[..., Process]) -> None:
    env = _env(tmp_path, upstream, postgres_url)
    # Started together: both migrate the new database at once (an advisory lock serializes).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one, two = pool.map(lambda i: processes([], env, tmp_path / f"replica-{i}.log"), (1, 2))
    with httpx.Client(base_url=one.url, timeout=30) as a, \
            httpx.Client(base_url=two.url, timeout=30) as b:
        created = a.post("/api/prompts", json={"name": "shared", "text": "v1"}).json()
        pid = created["id"]
        assert b.get(f"/api/prompts/{pid}").json()["name"] == "shared"
        assert b.patch(f"/api/prompts/{pid}", json={"tags": ["from-b"]},
                       headers={"If-Match": created["etag"]}).status_code == 200
        assert a.get(f"/api/prompts/{pid}").json()["tags"] == ["from-b"]
        assert a.patch(f"/api/prompts/{pid}", json={"name": "stale"},
                       headers={"If-Match": created["etag"]}).status_code == 412

        # The race: 40 versions added at once, half through each replica.
        start = threading.Barrier(8)

        def add(i: int) -> int:
            client = (a, b)[i % 2]
            if i < 8:
                start.wait()
            response = client.post(f"/api/prompts/{pid}/versions", json={"text": f"t{i}"})
            assert response.status_code == 201, response.text
            number: int = response.json()["number"]
            return number

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            numbers = list(pool.map(add, range(40)))
        assert sorted(numbers) == list(range(2, 42))
        versions = b.get(f"/api/prompts/{pid}/versions").json()["items"]
        assert [v["number"] for v in versions] == list(range(1, 42))
        assert sorted(v["text"] for v in versions[1:]) == sorted(f"t{i}" for i in range(40))
        # Every text kept under the number its writer was told.
        told = dict(zip(numbers, (f"t{i}" for i in range(40)), strict=True))
        assert all(v["text"] == told[v["number"]] for v in versions[1:])
        assert a.get(f"/api/prompts/{pid}").json()["current_version"] == 41

        # A stream on one replica is a run the other lists.
        upstream.enqueue(Script.chat(["from ", "a"]))
        stream = a.post("/optimize-stream", json={"prompt": "p"})
        for _ in range(400):
            runs = b.get("/api/runs").json()["items"]
            if runs:
                break
            threading.Event().wait(0.025)
        assert [(r["id"], r["text"]) for r in runs] == [(stream.headers["x-stream-id"],
                                                         "from a")]


def _serve_fails(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTCAST_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "promptcast", "serve", "--port",
                           str(free_port()), *args], env=full, capture_output=True, text=True,
                          timeout=60)


def test_an_unreachable_database_at_start_up_is_one_line_and_a_non_zero_exit(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = _serve_fails({"PROMPTCAST_DATABASE_URL":
                         f"postgresql://app:s3cret-pw@127.0.0.1:{port}/library"})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("promptcast: the database postgresql://app:***@127.0.0.1:")
    assert "unavailable" in lines[0] and "s3cret-pw" not in done.stderr
    # A SQLite file that cannot be made is the same.
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = _serve_fails({}, "--database-url", f"sqlite:///{blocker}/sub/library.db")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="promptcast-pg-own-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(free_port(), workdir, as_postgres).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_when_the_database_goes_away_streams_flow_and_records_queue_then_drop(
        serve: Callable[..., RunningServer], own_postgres: PostgresServer,
        upstream: UpstreamDouble) -> None:
    server = serve(database_url=own_postgres.url(), record_queue=3)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/readyz").json()["checks"]["database"] == "ok"
        own_postgres.stop()
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "the database postgresql://postgres@127.0.0.1" in ready.json()["checks"][
            "database"]
        assert c.get("/api/prompts").json()["error"]["code"] == "database_unavailable"
        ids = []
        for i in range(5):
            upstream.enqueue(Script.chat([f"chunk {i}"]))
            stream = c.post("/optimize-stream", json={"prompt": f"p{i}"})
            assert stream.status_code == 200
            assert stream.text.endswith("data: [DONE]\n\n")  # every stream ends as it should
            ids.append(stream.headers["x-stream-id"])
        metrics = c.get("/metrics").text
        assert _metric(metrics, "promptcast_run_records_dropped_total") == 2
        assert _metric(metrics, "promptcast_run_records_queued") == 3
        own_postgres.start()
        for _ in range(600):
            if c.get("/readyz").status_code == 200:
                items = c.get("/api/runs").json().get("items", [])
                if len(items) == 3:
                    break
            threading.Event().wait(0.05)
        assert sorted(r["id"] for r in c.get("/api/runs").json()["items"]) == sorted(ids[:3])
        metrics = c.get("/metrics").text
        assert _metric(metrics, "promptcast_run_records_written_total") == 3
        assert _metric(metrics, "promptcast_run_records_queued") == 0
