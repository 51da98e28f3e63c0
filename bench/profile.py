"""Where a target's CPU per chunk goes: py-spy under one benchmark scenario.

    python -m bench.profile --target split --scenario c1000
    python -m bench.profile --target inproc --scenario throughput --rate 500

Runs the scenario twice against a fresh target each time, set up exactly as
`bench.run` does: once unprofiled (for the CPU µs per chunk, from schedstat),
once under `py-spy record` (blocking sampling, so every stack is whole; the
sampler itself runs on the harness CPU). Prints the share of samples by layer
and by function (self and inclusive), each also as µs per chunk (share ×
the unprofiled CPU per chunk), and keeps the raw collapsed stacks in
bench/results/tmp/ for a flame graph. Needs py-spy (dev extras).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from . import run as bench_run

LAYERS = [
    ("promptcast", re.compile(r"promptcast/")),
    ("uvicorn (server, ASGI send)", re.compile(r"uvicorn/")),
    ("starlette (routing, middleware)", re.compile(r"starlette/")),
    ("httpx/httpcore/h11 (upstream client)", re.compile(r"(httpx|httpcore|h11)/")),
    ("anyio (client I/O, cancel scopes)", re.compile(r"anyio/")),
    ("logging", re.compile(r"logging/")),
    ("event loop (uvloop C + asyncio)", re.compile(r"asyncio/|uvloop")),
]
_FRAME = re.compile(r"(?P<func>.*) \((?P<path>.*?)(?::\d+)?\)$")


def _short(path: str) -> str:
    path = re.sub(r".*site-packages/", "", path)
    path = re.sub(r".*/src/", "", path)
    return re.sub(r".*/lib/python3\.\d+/", "", path)


def _key(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    path = _short(match["path"])
    return f"{match['func']} ({path})", path


def layer_of(path: str, func: str) -> str:
    if func.startswith("Runner.run"):
        return "event loop (uvloop C + asyncio)"  # uvloop's native loop shows up here
    for name, pattern in LAYERS:
        if pattern.search(path):
            return name
    return "other (stdlib: contextlib, weakref, ...)"


def analyse(raw: Path) -> dict[str, Any]:
    """Self and inclusive sample counts by function and by layer."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_key(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        leaf, leaf_path = frames[-1]
        own[leaf] += n
        layers[layer_of(leaf_path, leaf)] += n
        for name in {f for f, _ in frames}:
            incl[name] += n
    return {"total": total, "self": own, "inclusive": incl, "layers": layers}


def report(result: dict[str, Any], us_per_chunk: float, top: int) -> str:
    total = max(result["total"], 1)
    lines = [f"{result['total']} samples; CPU per chunk unprofiled: {us_per_chunk:.1f} µs", "",
             "by layer (self time)                          share   µs/chunk"]
    for name, n in result["layers"].most_common():
        lines.append(f"  {name:44} {100 * n / total:5.1f}%  {us_per_chunk * n / total:7.1f}")
    lines += ["", "by function (self time)"]
    for name, n in result["self"].most_common(top):
        lines.append(f"  {100 * n / total:5.1f}%  {us_per_chunk * n / total:7.1f} µs  {name}")
    lines += ["", "by function (inclusive), promptcast / starlette / httpx frames"]
    shown = 0
    for name, n in result["inclusive"].most_common():
        if not re.search(r"\((promptcast|starlette|httpx|httpcore|uvicorn)/", name):
            continue
        lines.append(f"  {100 * n / total:5.1f}%  {us_per_chunk * n / total:7.1f} µs  {name}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


def marginal(bench: bench_run.Bench, targets: list[bench_run.Target], streams: int,
             few: int, many: int, gap: float) -> list[dict[str, Any]]:
    """Per-stream and per-chunk CPU, from two runs that differ only in chunks per stream."""
    rows = []
    for target in targets:
        runs = []
        for chunks in (few, many):
            scenario = bench_run.Scenario(f"m{chunks}", f"{streams} × {chunks}", streams,
                                          chunks, gap, 0.2)
            runs.append(bench.measure(target, scenario))
        if any("failed" in r or r["errors"] for r in runs):
            rows.append({"target": target.name, "failed": True})
            continue
        (a, b) = runs
        # chunks relayed = content chunks + the final one, per stream
        per_chunk = (b["cpu_s"] - a["cpu_s"]) * 1e6 / (b["chunks"] - a["chunks"])
        per_stream = (a["cpu_s"] * 1e6 - per_chunk * a["chunks"]) / streams
        rows.append({"target": target.name, "per_chunk_us": round(per_chunk, 1),
                     "per_stream_us": round(per_stream, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--custom", metavar="STREAMS,CHUNKS,GAP_MS",
                        help="profile this load instead of a named scenario, e.g. 100,500,10 "
                        "(long streams: the per-chunk path)")
    parser.add_argument("--marginal", action="store_true",
                        help="instead of profiling: CPU per stream and per chunk of every "
                        "target, from 100 streams × 10 and × 150 chunks at 20 ms gaps")
    parser.add_argument("--target", default="split", help="split, inproc, nginx-less targets")
    parser.add_argument("--scenario", default="c1000")
    parser.add_argument("--quick", action="store_true", help="use the quick scenario sizes")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--native", action="store_true",
                        help="sample C frames too (uvloop, httptools, libc: system calls)")
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(bench_run.VENV_BIN / "py-spy")
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    bench = bench_run.Bench(argparse.Namespace(quick=args.quick, peers=False, targets=None,
                                               reference=True,
                                               scenarios=args.scenario, no_doc=True))
    if args.custom:
        n, c, g = args.custom.split(",")
        bench.scenarios = [bench_run.Scenario(
            "custom", f"{int(n)} streams × {int(c)} chunks, {float(g):g} ms gaps", int(n),
            int(c), float(g), 0.2, deadline_s=120)]
    if not bench.scenarios and not args.marginal:
        raise SystemExit(f"no scenario {args.scenario!r}")
    import os

    os.sched_setaffinity(0, {int(bench_run.HARNESS_CPU)})
    bench.start_upstream()
    if args.marginal:
        try:
            rows = marginal(bench, [t for t in bench.targets() if t.name != "direct"],
                            100, 10, 150, 20)
        finally:
            if bench.upstream is not None:
                bench_run.stop(bench.upstream)
        print("\ntarget      CPU per stream (µs)   CPU per chunk (µs)")
        for row in rows:
            if row.get("failed"):
                print(f"{row['target']:10}  failed")
            else:
                print(f"{row['target']:10}  {row['per_stream_us']:>18,.0f}   "
                      f"{row['per_chunk_us']:>17.1f}")
        return 0
    try:
        scenario = bench.scenarios[0]
        targets = {t.name: t for t in bench.targets()}
        target = targets.get(args.target)
        if target is None or target.start is None:
            raise SystemExit(f"cannot profile {args.target!r}; choose from "
                             f"{[n for n, t in targets.items() if t.start]}")
        plain = bench.measure(target, scenario)
        if "failed" in plain:
            raise SystemExit(f"the unprofiled run failed: {plain['failed']}")
        us = float(plain["cpu_us_per_chunk"])
        port = bench_run.free_port()
        proc = target.start(port)
        raw = bench.tmp / f"profile-{target.name}-{scenario.name}.txt"
        try:
            bench_run.wait_http(port, target.ready, target.startup_timeout, proc)
            bench.warm_up(port, target, bench.tmp / "warm.json")
            spy = subprocess.Popen(
                bench_run.pinned(bench_run.HARNESS_CPU, [
                    pyspy, "record", "--pid", str(proc.pid), "--rate", str(args.rate),
                    "--format", "raw", "--output", str(raw),
                    "--duration", str(int(scenario.deadline_s + 30)),
                    *(["--native"] if args.native else []),
                ]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            loaded = bench.loadgen(port, target, scenario.loadgen_args(),
                                   bench.tmp / "profiled.json", scenario.deadline_s + 60)
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            spy.wait(60)
        finally:
            bench_run.stop(proc)
    finally:
        if bench.upstream is not None:
            bench_run.stop(bench.upstream)
    text = report(analyse(raw), us, args.top)
    header = (f"profile of {target.label} under {scenario.name} ({scenario.title}); "
              f"profiled run: {loaded['completed']}/{loaded['streams']} streams, "
              f"{loaded['errors']} errors")
    out = bench.tmp / f"profile-{target.name}-{scenario.name}.md"
    out.write_text(header + "\n\n" + text + "\n")
    print(header)
    print()
    print(text)
    print(f"\nraw stacks: {raw}\nreport: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
