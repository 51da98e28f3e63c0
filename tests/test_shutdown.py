"""SIGTERM: stop accepting, let streams finish for the drain time, end the rest, exit 0."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptcast.wire.sse import Event

from .conftest import Process, models_file
from .sse_client import events_of
from .upstream_double import Script, UpstreamDouble

pytestmark = pytest.mark.anyio


async def test_sigterm_drains_then_ends_streams_with_shutting_down(
    tmp_path: Path, upstream: UpstreamDouble, processes: Callable[..., Process]
) -> None:
    server = processes([], {"PROMPTCAST_MODELS_FILE": str(models_file(tmp_path, upstream)),
                            "PROMPTCAST_DEFAULT_MODEL": "scripted",
                            "PROMPTCAST_DRAIN_TIMEOUT": "1.5"}, tmp_path / "server.log")
    short_gate, long_gate = upstream.gate(), upstream.gate()
    upstream.enqueue(Script.chat(["short", short_gate, " done"]),
                     Script.chat(["long", long_gate, " never"]))
    async with (
        httpx.AsyncClient(timeout=20) as client,
        client.stream("POST", f"{server.url}/optimize-stream", json={"prompt": "a"}) as short,
        client.stream("POST", f"{server.url}/optimize-stream", json={"prompt": "b"}) as long,
    ):
        short_events: list[Event] = []
        long_events: list[Event] = []
        short_iter = events_of(short).__aiter__()
        long_iter = events_of(long).__aiter__()
        short_events.append(await short_iter.__anext__())
        long_events.append(await long_iter.__anext__())
        server.proc.send_signal(signal.SIGTERM)
        # New connections are refused (within uvicorn's 0.1 s tick) while
        # the old streams go on. One accepted just as the listener closes is
        # closed unanswered: refused too, to the client.
        refused = False
        for _ in range(300):
            try:
                async with httpx.AsyncClient() as fresh:
                    await fresh.get(f"{server.url}/healthz")
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                refused = True
                break
        assert refused
        short_gate.set()
        short_events += [e async for e in short_iter]
        long_events += [e async for e in long_iter]
    assert short_events[-1].data == "[DONE]"
    assert long_events[-1].event == "error"
    assert json.loads(long_events[-1].data)["code"] == "shutting_down"
    assert server.proc.wait(15) == 0
    assert await upstream.until(lambda: upstream.open_connections == 0, 2.0)
