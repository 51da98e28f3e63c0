"""deploy/nginx.conf in front of two real replicas and a real Redis, as docs/deploy.md says."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Template

import httpx
import pytest

from .conftest import ROOT, Process, free_port
from .sse_client import events_of, get_stream, post_stream
from .test_replicas import PROMPT
from .test_resumable import content_of, read_some
from .upstream_double import Script, UpstreamDouble

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[list[Process]], str]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(replicas: list[Process]) -> str:
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        port = free_port()
        servers = "\n        ".join(
            f"server {r.url.removeprefix('http://')};" for r in replicas
        )
        conf = Template((ROOT / "deploy" / "nginx.conf").read_text()).safe_substitute(
            prefix=prefix, servers=servers, listen=f"127.0.0.1:{port}"
        )
        (prefix / "nginx.conf").write_text(conf)
        proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
             str(prefix / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                return url
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise RuntimeError((prefix / "error.log").read_text()) from None
                threading.Event().wait(0.05)
        raise RuntimeError("nginx did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


async def test_streams_pass_nginx_unbuffered_and_resume_on_any_replica(
    replicas: Callable[..., list[Process]], nginx: Callable[[list[Process]], str],
    upstream: UpstreamDouble,
) -> None:
    front = nginx(replicas())
    gate = upstream.gate()
    upstream.enqueue(Script.chat(["first", gate, "second"]))
    async with httpx.AsyncClient(timeout=10) as client, client.stream(
        "POST", f"{front}/optimize-stream", json={"prompt": "x"}
    ) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        async for event in events_of(response):
            # "second" is held upstream until "first" got through nginx.
            if "first" in event.data:
                gate.set()
            if event.data == "[DONE]":
                break
    assert gate.is_set()

    pieces = [f"p{i} " for i in range(30)]
    upstream.enqueue(Script.chat(pieces, gap=0.01))
    stream_id, first = await read_some(f"{front}/optimize-stream", PROMPT, 5)
    events = list(first)
    # Each reconnect may land on either replica: round robin, no stickiness.
    while events[-1].data != "[DONE]":
        async with httpx.AsyncClient(timeout=10) as client, client.stream(
            "GET", f"{front}/optimize-stream/{stream_id}",
            headers={"Last-Event-ID": events[-1].id},
        ) as response:
            async for event in events_of(response):
                events.append(event)
                break
    assert [e.id for e in events] == [f"{stream_id}.{n}" for n in range(1, len(events) + 1)]
    assert content_of(events) == "".join(pieces)
    done = await get_stream(f"{front}/optimize-stream/{stream_id}",
                            {"Last-Event-ID": events[-1].id})
    assert done.status == 204
    plain = await post_stream(f"{front}/optimize-stream", {"prompt": "y"})
    assert plain.status == 200 and plain.terminal.data == "[DONE]"


async def test_mcp_sessions_stick_to_their_replica_through_nginx(
    replicas: Callable[..., list[Process]], nginx: Callable[[list[Process]], str],
    upstream: UpstreamDouble,
) -> None:
    from mcp import Client  # only this test needs the SDK's client

    front = nginx(replicas())
    async with Client(f"{front}/mcp", mode="legacy") as client:
        # Each request of the session reaches the replica that holds it.
        for word in ("one", "two", "three", "four"):
            upstream.enqueue(Script.chat([word]))
            result = await client.call_tool("optimize_prompt", {"prompt": "x"})
            assert result.structured_content == {"text": word, "mode": "optimize",
                                                 "model": "scripted"}
