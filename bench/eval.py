"""What an evaluation run adds to the time the upstream needs, and promptcast's CPU per cell.

    python -m bench.eval [--cells 200] [--concurrency 16] [--delay 200] [--chunks 20]
                         [--gap 20] [--judge] [--rounds 3] [--database URL]

A real `promptcast serve` (pinned to one core) runs POST /eval against the
benchmarks' upstream double (`bench.upstream`, on the other core). Every cell's
stream is scripted by the `[bench ...]` marker in the prompt: `delay` ms before
its first chunk, then `chunks` chunks `gap` ms apart. All cells alike, the
upstream needs ceil(cells / concurrency) rounds of one stream's time: the run
can take no less. The figures: the run's wall time against that floor, and the
server's CPU time (utime + stime from /proc) divided by the cells.

With `--judge`, every cell is also scored by the judge, on the same upstream
(its reply does not parse: the judge's calls still take their scripted time,
and the run records judge errors; the floor then counts two streams a cell).

With `--database URL` (`sqlite:///path`), the library is on: every run is kept
as an evaluation and a run record (its cost is in the CPU per cell).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.run import (
    HARNESS_CPU,
    PY,
    ROOT,
    TARGET_CPU,
    VENV_BIN,
    cpu_ticks,
    free_port,
    pinned,
    spawn,
    stop,
    wait_http,
    wait_ready_file,
)
from promptcast.wire.sse import Decoder

TICK = os.sysconf("SC_CLK_TCK")


def _run_once(port: int, pid: int,
              body: dict[str, object]) -> tuple[float, float, dict[str, object]]:
    """One run: its wall time (s), the server's CPU time over it (s), and its summary."""
    before = cpu_ticks([pid])
    started = time.perf_counter()
    summary: dict[str, object] = {}
    with httpx.Client(timeout=httpx.Timeout(10, read=None), trust_env=False) as client, \
            client.stream("POST", f"http://127.0.0.1:{port}/eval", json=body) as response:
        response.raise_for_status()
        decoder = Decoder()
        for raw in response.iter_bytes():
            for event in decoder.feed(raw):
                if event.event == "summary":
                    summary = json.loads(event.data)
    wall = time.perf_counter() - started
    return wall, (cpu_ticks([pid]) - before) / TICK, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=200.0,
                        help="ms before a stream's first chunk")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--gap", type=float, default=20.0, help="ms between chunks")
    parser.add_argument("--judge", action="store_true", help="score every cell with a judge too")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", metavar="URL",
                        help="the library's database (default: off)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="promptcast-bench-eval-"))
    ready = tmp / "upstream.port"
    upstream = spawn(pinned(HARNESS_CPU, [PY, "-m", "bench.upstream", "--port", "0",
                                          "--lifetime", "1500", "--ready-file", str(ready)]),
                     tmp / "upstream.log", cwd=ROOT)
    server = None
    try:
        up_port = int(wait_ready_file(ready, upstream, 20))
        models = tmp / "models.toml"
        models.write_text('[models."bench"]\nprovider = "openai"\n'
                          f'base_url = "http://127.0.0.1:{up_port}/v1"\nmodel = "bench"\n')
        port = free_port()
        server = spawn(pinned(TARGET_CPU, [str(VENV_BIN / "promptcast"), "serve", "--port",
                                           str(port), "--models", str(models)]),
                       tmp / "server.log", cwd=ROOT,
                       env={"PROMPTCAST_DEFAULT_MODEL": "bench", "PROMPTCAST_LOG_LEVEL": "warning",
                            "PROMPTCAST_EVAL_MAX_CONCURRENCY": str(max(32, args.concurrency)),
                            "PROMPTCAST_DATABASE_URL": args.database or "off"})
        wait_http(port, "/healthz", 30, server)

        marker = f"[bench n={args.chunks} gap={args.gap:g} delay={args.delay:g}]"
        prompts = [{"name": "a", "text": f"You are a support bot. {marker}"},
                   {"name": "b", "text": f"You are a brief support bot. {marker}"}]
        cases = [{"message": f"customer message {i}", "contains": "k"}
                 for i in range(args.cells // len(prompts))]
        body = {"prompts": prompts, "cases": cases, "model": "bench",
                "judge": "bench" if args.judge else False, "concurrency": args.concurrency}
        stream_s = (args.delay + (args.chunks - 1) * args.gap) / 1000
        streams = args.cells * (2 if args.judge else 1)
        floor = math.ceil(streams / args.concurrency) * stream_s

        _run_once(port, server.pid, {**body, "cases": cases[:8]})  # warm-up: connections, imports
        walls, cpus = [], []
        for _ in range(args.rounds):
            wall, cpu, summary = _run_once(port, server.pid, body)
            cells = summary.get("cells")
            if cells != args.cells:
                sys.exit(f"the run answered {cells} cells, not {args.cells}: {summary}")
            walls.append(wall)
            cpus.append(cpu)
        wall = statistics.median(walls)
        cpu = statistics.median(cpus)
        print(json.dumps({
            "cells": args.cells, "concurrency": args.concurrency, "judge": args.judge,
            "database": args.database,
            "stream_ms": round(stream_s * 1000, 1), "floor_s": round(floor, 3),
            "wall_s": [round(w, 3) for w in walls], "median_wall_s": round(wall, 3),
            "over_floor_pct": round((wall / floor - 1) * 100, 2),
            "cpu_s": [round(c, 3) for c in cpus],
            "cpu_ms_per_cell": round(cpu / args.cells * 1000, 3),
            "cpu_ms_per_stream": round(cpu / streams * 1000, 3),
        }, indent=2))
    finally:
        if server is not None:
            stop(server)
        stop(upstream)


if __name__ == "__main__":
    main()
