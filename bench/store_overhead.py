"""What resumability costs: the streams store's extra CPU per chunk and time to first byte,
and the memory an idle finished stream keeps, for the memory and the Redis store.

    python -m bench.store_overhead [--chunks 20000] [--streams 1000]

One process, no HTTP: the same Relay runs (a) straight into a null client sink,
(b) into a store through a Producer with a follower reading it back, so the
difference is the store alone. A redis-server is started on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from promptcast.relay.drain import Drain
from promptcast.relay.relay import Limits, Relay
from promptcast.relay.resumable import Position, Producer, follow
from promptcast.relay.streams import StreamStore
from promptcast.relay.streams.memory import MemoryStore
from promptcast.relay.streams.redis import RedisStore
from promptcast.wire.sse import Event

CHUNK = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
    "model": "bench", "choices": [{"index": 0, "delta": {"content": "token"},
                                   "finish_reason": None}],
}, separators=(",", ":"))
LIMITS = Limits(first_token_timeout=30, idle_timeout=30, total_timeout=600,
                heartbeat_interval=None)


class Events:
    """`n` chunk events then [DONE], as fast as the consumer takes them."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[Event]:
        # Each event gives the loop a turn, as a read from a socket would.
        for _ in range(self.n):
            await asyncio.sleep(0)
            yield Event(CHUNK)
        yield Event("[DONE]")

    async def aclose(self) -> None:
        pass


class NullSink:
    def __init__(self) -> None:
        self.first_at: float | None = None
        self.frames = 0

    async def event(self, seq: int, frame: bytes) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.frames += 1

    async def terminal(self, seq: int, frame: bytes) -> None:
        self.frames += 1

    async def heartbeat(self) -> None:
        pass

    async def write(self, frames: bytes) -> None:
        # A follower writes the frames of one read together: count frames, not writes.
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.frames += frames.count(b"\n\n")


async def _never() -> None:
    await asyncio.Event().wait()


async def direct(n: int) -> tuple[float, float]:
    sink = NullSink()
    start_cpu, start = time.process_time(), time.perf_counter()
    await Relay(Events(n), LIMITS, "bench").run(sink, _never)  # type: ignore[arg-type]
    assert sink.frames == n + 1
    assert sink.first_at is not None
    return time.process_time() - start_cpu, sink.first_at - start


async def stored(store: StreamStore, n: int, stream_id: str) -> tuple[float, float]:
    sink = NullSink()
    start_cpu, start = time.process_time(), time.perf_counter()
    await store.create(stream_id, None)
    producer = Producer(store, Relay(Events(n), LIMITS, stream_id), stream_id, grace=60,
                        drain=Drain(30), on_end=lambda stats: None)
    task = asyncio.ensure_future(producer.run())
    done = await follow(store, Position(stream_id, 0), sink.write, first=None,
                        heartbeat_interval=15)
    await task
    assert done and sink.frames == n + 1, (done, sink.frames)
    assert sink.first_at is not None
    return time.process_time() - start_cpu, sink.first_at - start


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def redis_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def redis_used(store: RedisStore) -> int:
    info: dict[str, Any] = await store._redis.info("memory")
    return int(info["used_memory"])


async def main(chunks: int, streams: int, redis_port: int, redis_pid: int) -> dict[str, Any]:
    results: dict[str, Any] = {"chunks": chunks, "retained_streams": streams,
                               "events_per_retained_stream": 50}
    # Warm up the interpreter's caches once, then measure.
    await direct(1000)
    cpu, ttfb = await direct(chunks)
    results["direct"] = {"cpu_us_per_chunk": cpu / chunks * 1e6, "ttfb_us": ttfb * 1e6}

    memory = MemoryStore(ttl=600, max_events=10**7, max_stream_bytes=10**9,
                         max_total_bytes=10**10)
    cpu, ttfb = await stored(memory, chunks, "membench")
    results["memory"] = {"cpu_us_per_chunk": cpu / chunks * 1e6, "ttfb_us": ttfb * 1e6}
    gc.collect()
    before = rss_kb()
    for i in range(streams):
        await stored(memory, 50, f"idle{i}")
    gc.collect()
    results["memory"]["bytes_per_idle_stream"] = (rss_kb() - before) * 1024 / streams

    store = RedisStore(f"redis://127.0.0.1:{redis_port}/0", ttl=600, max_events=10**7,
                       max_stream_bytes=10**9, lease_ttl=30, running_ttl=600)
    for _ in range(100):
        try:
            await store.ping()
            break
        except Exception:
            await asyncio.sleep(0.05)
    await stored(store, 1000, "warm")
    redis_before = redis_cpu(redis_pid)
    cpu, ttfb = await stored(store, chunks, "redisbench")
    redis_spent = redis_cpu(redis_pid) - redis_before
    results["redis"] = {"cpu_us_per_chunk": cpu / chunks * 1e6, "ttfb_us": ttfb * 1e6,
                        "redis_server_cpu_us_per_chunk": redis_spent / chunks * 1e6}
    used = await redis_used(store)
    for i in range(streams):
        await stored(store, 50, f"idle{i}")
    results["redis"]["bytes_per_idle_stream"] = (await redis_used(store) - used) / streams
    await store.aclose()
    for name in ("memory", "redis"):
        results[name]["extra_cpu_us_per_chunk"] = (
            results[name]["cpu_us_per_chunk"] - results["direct"]["cpu_us_per_chunk"])
        results[name]["extra_ttfb_us"] = results[name]["ttfb_us"] - results["direct"]["ttfb_us"]
    results["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/store_overhead.json"))
    args = parser.parse_args()
    import uvloop

    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            outcome = uvloop.run(main(args.chunks, args.streams, port, redis.pid))
        finally:
            redis.kill()
            redis.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
