"""What a stream costs apart from its events: CPU per stream at several stream lengths.

    python -m bench.starts                                   # split and nginx, 1 and 500 chunks
    python -m bench.starts --targets split,nginx,mini --chunks 1,20,100,500
    python -m bench.starts --baseline HEAD~1 --targets split  # and split@<sha> beside it

`bench.run`'s scenarios report CPU per chunk, with each stream's start and end
spread over its chunks and the machine's noise on top (10-40 % between runs).
Here each target takes many short streams under steady load and the figure
is CPU per stream: at one chunk that is, nearly, what a start and an end
cost; at several lengths the slope is what an event costs at full speed.

Every target process starts fresh, pinned and warmed up as in `bench.run`,
then takes `--runs` loads of `--streams` streams, `--concurrency` at a time,
with no gaps; its CPU comes from schedstat over its process tree. That is
repeated on `--processes` fresh processes per target and length, in
interleaved rounds. Printed: the median µs a stream and all the runs, and
the µs a chunk between the two longest lengths. Its noise here: a few µs a
stream (2026-12-03: split 192-194 µs a stream in two rounds of nine runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from . import run as bench_run


def measure(bench: bench_run.Bench, target: bench_run.Target, chunks: int,
            args: argparse.Namespace) -> list[float]:
    """µs a stream for each of `args.runs` loads on one fresh process of `target`."""
    port = bench_run.free_port()
    assert target.start is not None
    proc = target.start(port)
    try:
        bench_run.wait_http(port, target.ready, target.startup_timeout, proc)
        bench.warm_up(port, target, bench.tmp / "warm.json")
        pids = bench_run.process_tree(proc.pid)
        per_stream = []
        for _ in range(args.runs):
            before = bench_run.schedstat_ns(pids)[0]
            load = bench.loadgen(port, target, [
                "--streams", str(args.streams), "--concurrency", str(args.concurrency),
                "--chunks", str(chunks), "--gap", "0", "--ramp", "0.05", "--deadline", "60",
            ], bench.tmp / "load.json", 120)
            if load["errors"] or load["completed"] != args.streams:
                raise RuntimeError(f"{target.name}: {load['completed']}/{args.streams} streams, "
                                   f"{load['errors']} errors: {load['error_kinds']}")
            per_stream.append((bench_run.schedstat_ns(pids)[0] - before) / 1e3 / args.streams)
            time.sleep(0.2)
        return per_stream
    finally:
        bench_run.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="split,nginx",
                        help="comma-separated: split, inproc, chain, nginx, mini, and any "
                        "<kind>@<sha> that --baseline adds")
    parser.add_argument("--baseline", metavar="REF",
                        help="add split@<sha> and inproc@<sha>, promptcast as it was at REF")
    parser.add_argument("--chunks", default="1,500", help="stream lengths, comma-separated")
    parser.add_argument("--streams", type=int, default=600, help="streams per load")
    parser.add_argument("--concurrency", type=int, default=50, help="streams at a time")
    parser.add_argument("--runs", type=int, default=3, help="loads per process")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes per target and length")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.chunks.split(",")]
    if not all(1 <= n <= 5000 for n in lengths) or not 1 <= args.streams <= 5000:
        parser.error("chunks must be 1 to 5,000 and streams 1 to 5,000")
    if not 1 <= args.concurrency <= args.streams or not 1 <= args.runs * args.processes <= 50:
        parser.error("concurrency must be 1 to --streams, and runs × processes 1 to 50")
    # bench.run's own choice of targets: `--targets split` keeps `split@<sha>` too.
    bench = bench_run.Bench(argparse.Namespace(
        quick=False, peers=False, targets=args.targets, reference=True, scenarios="",
        no_doc=True, baseline=[args.baseline] if args.baseline else None))
    os.sched_setaffinity(0, {int(bench_run.HARNESS_CPU)})
    bench.start_upstream()
    try:
        targets = [t for t in bench.targets() if t.start is not None]
        missing = set(args.targets.split(",")) - {t.name for t in targets}
        if missing:
            parser.error(f"unknown targets {sorted(missing)}; "
                         "known: split, inproc, chain, nginx, mini")
        runs: dict[str, dict[int, list[float]]] = {
            t.name: {c: [] for c in lengths} for t in targets}
        for _ in range(args.processes):  # interleaved: each round visits every pair once
            for chunks in lengths:
                for target in targets:
                    got = measure(bench, target, chunks, args)
                    runs[target.name][chunks] += got
                    print(f"  {target.name:16} {chunks:5} chunks: "
                          f"{', '.join(f'{x:.0f}' for x in got)} µs a stream", flush=True)
    finally:
        if bench.upstream is not None:
            bench_run.stop(bench.upstream)
    report = report_of(runs, lengths, args)
    out = bench.tmp / "starts.json"
    out.write_text(json.dumps(report, indent=2))
    print()
    print(table(report))
    print(f"\nwrote {out}")
    return 0


def report_of(runs: dict[str, dict[int, list[float]]], lengths: list[int],
              args: argparse.Namespace) -> dict[str, Any]:
    """Medians per target and length, and the per-chunk slope between the two longest."""
    rows = []
    for name, by_length in runs.items():
        medians = {c: statistics.median(v) for c, v in by_length.items()}
        row: dict[str, Any] = {"target": name, "us_per_stream": medians,
                               "runs": {c: [round(x, 1) for x in v] for c, v in by_length.items()}}
        if len(lengths) > 1:
            a, b = sorted(lengths)[-2:]
            row["us_per_chunk"] = (medians[b] - medians[a]) / (b - a)
        rows.append(row)
    return {"streams": args.streams, "concurrency": args.concurrency, "runs": args.runs,
            "processes": args.processes, "lengths": lengths, "rows": rows,
            "machine": bench_run.machine()}


def table(report: dict[str, Any]) -> str:
    lengths: list[int] = report["lengths"]
    head = "| target | " + " | ".join(f"{c} chunks" for c in lengths) + " |"
    if len(lengths) > 1:
        a, b = sorted(lengths)[-2:]
        head += f" µs a chunk, {a} → {b} |"
    lines = [head, "|---|" + "---:|" * (len(lengths) + (len(lengths) > 1))]
    for row in report["rows"]:
        cells = [f"{row['us_per_stream'][c]:.0f}" for c in lengths]
        if "us_per_chunk" in row:
            cells.append(f"{row['us_per_chunk']:.2f}")
        lines.append(f"| {row['target']} | " + " | ".join(cells) + " |")
    return (f"CPU µs a stream (median of {report['processes']} processes × {report['runs']} "
            f"loads of {report['streams']} streams, {report['concurrency']} at a time, no gaps)"
            f"\n\n" + "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
