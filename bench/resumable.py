"""What resumable streams cost through the gateway: plain, memory store, Redis store.

    python -m bench.resumable [--scenarios c100,c500] [--repeat 2]

The split gateway (pinned to CPU 0) relays the upstream double's streams
(CPU 1, with the load generator and redis-server). Each scenario runs once
per mode, interleaved: plain streams, `"resumable": true` with the memory
store, and with a real redis-server. Reported: the gateway's CPU per chunk,
redis-server's, errors, time to first byte and the p99 gap between chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import (
    free_port,
    pinned,
    process_tree,
    schedstat_ns,
    spawn,
    stop,
    wait_http,
    wait_ready_file,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PROMPTCAST = str(Path(PY).with_name("promptcast"))
# name: (streams, concurrency, chunks, gap ms)
SCENARIOS = {
    "c100": (200, 100, 50, 20.0),
    "c500": (1000, 500, 50, 20.0),
}
MODES = ("plain", "memory", "redis")


def _loadgen(port: int, resumable: bool, *args: str) -> dict[str, Any]:
    cmd = pinned("1", [PY, "-m", "bench.loadgen", "--port", str(port), *args,
                       *(["--resumable"] if resumable else [])])
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=180, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(mode: str, scenario: str, upstream_port: int, redis_port: int,
            redis_pid: int, workdir: Path) -> dict[str, Any]:
    """One gateway, one mode, one scenario: its figures."""
    streams, concurrency, chunks, gap = SCENARIOS[scenario]
    env = {"PROMPTCAST_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"} if mode == "redis" else {}
    port = free_port()
    gateway = spawn(pinned("0", [PROMPTCAST, "serve", "--port", str(port),
                                 "--upstream", f"http://127.0.0.1:{upstream_port}"]),
                    workdir / f"gateway-{mode}-{scenario}.log", env=env, cwd=ROOT)
    try:
        wait_http(port, "/healthz", 30, gateway)
        resumable = mode != "plain"
        _loadgen(port, resumable, "--streams", "100", "--concurrency", "50", "--chunks", "5",
                 "--gap", "1")
        pids = process_tree(gateway.pid)
        cpu0, _ = schedstat_ns(pids)
        redis0, _ = schedstat_ns([redis_pid])
        result = _loadgen(port, resumable, "--streams", str(streams), "--concurrency",
                          str(concurrency), "--chunks", str(chunks), "--gap", str(gap),
                          "--deadline", "150")
        cpu1, _ = schedstat_ns(pids)
        redis1, _ = schedstat_ns([redis_pid])
    finally:
        stop(gateway)
    relayed = result["chunks"]
    return {
        "mode": mode, "scenario": scenario, "streams": streams, "concurrency": concurrency,
        "chunks_per_stream": chunks, "gap_ms": gap,
        "completed": result["completed"], "errors": result["errors"],
        "error_examples": result.get("error_examples", {}),
        "gateway_cpu_us_per_chunk": (cpu1 - cpu0) / 1e3 / max(relayed, 1),
        "redis_cpu_us_per_chunk": ((redis1 - redis0) / 1e3 / max(relayed, 1)
                                   if mode == "redis" else 0.0),
        "ttfb_ms": result["ttfb_ms"], "gap_ms_percentiles": result["gap_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode and scenario")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/resumable.json")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="promptcast-resumable-") as tmp:
        workdir = Path(tmp)
        redis_port = free_port()
        redis = spawn(pinned("1", ["redis-server", "--port", str(redis_port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no",
                                   "--dir", tmp]), workdir / "redis.log")
        upstream = spawn(pinned("1", [PY, "-m", "bench.upstream", "--port", "0", "--lifetime",
                                      "3600", "--ready-file", str(workdir / "upstream.port")]),
                         workdir / "upstream.log", cwd=ROOT)
        try:
            upstream_port = int(wait_ready_file(workdir / "upstream.port", upstream, 30))
            for scenario in scenarios:
                for _ in range(args.repeat):
                    for mode in MODES:
                        run = measure(mode, scenario, upstream_port, redis_port, redis.pid,
                                      workdir)
                        runs.append(run)
                        print(f"{scenario:5} {mode:7} ok {run['completed']:5} "
                              f"err {run['errors']:3}  gateway "
                              f"{run['gateway_cpu_us_per_chunk']:6.1f} µs/chunk  redis "
                              f"{run['redis_cpu_us_per_chunk']:5.1f}  ttfb p50 "
                              f"{run['ttfb_ms']['p50']:7.1f} ms  gap p99 "
                              f"{run['gap_ms_percentiles']['p99']:7.1f} ms", flush=True)
        finally:
            stop(upstream)
            stop(redis)
    summary = {
        f"{scenario}/{mode}": {
            key: statistics.median(r[key] for r in runs
                                   if r["scenario"] == scenario and r["mode"] == mode)
            for key in ("gateway_cpu_us_per_chunk", "redis_cpu_us_per_chunk", "errors")
        }
        for scenario in scenarios for mode in MODES
    }
    outcome = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "median": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
