"""What the library costs: plain streams with it off, on SQLite and on PostgreSQL, and how fast
listing and searching 10,000 runs answers on SQLite.

    python -m bench.library [--repeat 3] [--quick] [--split]

Part 1 measures like bench/run.py's c100 (and with its helpers): a fresh
`promptcast serve` (in-process, or with `--split` the gateway of `make bench`'s
headline) per measurement pinned to CPU 0, the upstream double and the
load generator on CPU 1, 100 streams × 50 chunks with 20 ms gaps, CPU from
/proc/<pid>/task/*/schedstat. With the library on, the measurement lasts until
every run record is written (`promptcast_run_records_queued` back to 0), so the
recorder's batches are counted too. nginx runs the same load as the yardstick.

Part 2 fills a SQLite library with 10,000 runs (texts of 300-2,000 characters,
Chinese and English), then times GET /api/runs pages and searches over HTTP,
one request at a time: p50 and p95 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.run import (
    FULL,
    QUICK,
    RESULTS,
    TARGET_CPU,
    Bench,
    Target,
    free_port,
    median_run,
    pinned,
    spawn,
    stop,
    wait_http,
)

ROOT = Path(__file__).resolve().parent.parent
PROMPTCAST = str(Path(os.sys.executable).parent / "promptcast")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway cluster (as tests/conftest.py's), for the PostgreSQL target."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="promptcast-bench-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _bin(self, name: str) -> str:
        found = shutil.which(name)
        if found:
            return found
        return str(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))[-1])

    def start(self) -> str:
        data = self.dir / "data"
        subprocess.run([*self.as_user, self._bin("initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], check=True,
                       stdout=subprocess.DEVNULL)
        # Durable commits, as a production database has them (no fsync=off here).
        subprocess.run([*self.as_user, self._bin("pg_ctl"), "-D", str(data), "-l",
                        str(self.dir / "log"), "-o",
                        f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                        "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*self.as_user, self._bin("createdb"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", "library"], check=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/library"

    def stop(self) -> None:
        subprocess.run([*self.as_user, self._bin("pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- part 1: streams


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


class LibraryBench(Bench):
    """bench.run's measurement, waiting for the run records before the CPU is read."""

    records: tuple[float, float] = (0.0, 0.0)  # written, dropped: the last target's

    def loadgen(self, port: int, target: Target, argv: list[str], out: Path,
                timeout: float) -> dict[str, Any]:
        result = super().loadgen(port, target, argv, out, timeout)
        if target.name.startswith("library-"):
            from promptcast.storage.recorder import LINGER

            # Every library target, off too, waits and asks /metrics alike: a
            # render of /metrics costs the target CPU too, so polling until the
            # queue drains would charge the targets that record for the polls.
            # The writer's batching delay, then a batch, with room.
            time.sleep(LINGER + 0.75)
            deadline = time.monotonic() + 60
            while _metric(port, "promptcast_run_records_queued") > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("run records still queued after 60 s")
                time.sleep(0.1)
            self.records = (_metric(port, "promptcast_run_records_written_total"),
                            _metric(port, "promptcast_run_records_dropped_total"))
        return result


def stream_targets(bench: Bench, urls: dict[str, str], split: bool = False) -> list[Target]:
    up = f"http://127.0.0.1:{bench.up_port}"
    models = bench.tmp / "models.toml"
    models.write_text('[models."bench"]\nprovider = "openai"\n'
                      f'base_url = "{up}/v1"\nmodel = "bench"\n')
    # The split gateway (`make bench`'s headline target) relays the double's
    # /prompt/optimize-prompt; in-process runs the model service too.
    upstream = ["--upstream", up] if split else []
    shape = "split gateway" if split else "in-process"

    def server(name: str, url: str) -> Target:
        def start(port: int) -> subprocess.Popen[bytes]:
            return spawn(pinned(TARGET_CPU, [PROMPTCAST, "serve", "--port", str(port), *upstream,
                                             "--models", str(models), "--database-url", url]),
                         bench.tmp / f"{name}.log", cwd=ROOT)

        return Target(name, f"promptcast, library {name.removeprefix('library-')}",
                      "/optimize-stream", start=start, startup_timeout=60.0,
                      note=f"{shape}, --database-url {url.split('@')[-1]}")

    targets = [server(name, url) for name, url in urls.items()]
    nginx = [t for t in bench.targets() if t.name == "nginx"]
    return [*targets, *nginx]


def measure_streams(args: argparse.Namespace, pg_url: str | None) -> list[dict[str, Any]]:
    ns = argparse.Namespace(quick=args.quick, scenarios="c100", targets=None, peers=False,
                            reference=False, baseline=None, repeat=args.repeat)
    bench = LibraryBench(ns)
    scenario = next(s for s in (QUICK if args.quick else FULL) if s.name == "c100")
    os.sched_setaffinity(0, {1})
    bench.start_upstream()
    sqlite = bench.tmp / "library.db"
    urls = {"library-off": "off", "library-sqlite": f"sqlite:///{sqlite}"}
    if pg_url:
        urls["library-postgresql"] = pg_url
    rows: list[dict[str, Any]] = []
    try:
        targets = stream_targets(bench, urls, split=args.split)
        runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for _ in range(args.repeat):  # interleaved rounds, as bench.run does
            for target in targets:
                bench.records = (0.0, 0.0)
                row = bench.measure_quiet(target, scenario)
                row["records_written"], row["records_dropped"] = bench.records
                runs[target.name].append(row)
        rows = [median_run(runs[t.name]) for t in targets]
    finally:
        if bench.upstream is not None:
            stop(bench.upstream)
    return rows


# ---------------------------------------------------------------- part 1b: the recorder alone

_CHUNK = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                     "created": 1700000000, "model": "bench", "choices": [
                         {"index": 0, "delta": {"content": "token"}, "finish_reason": None}]},
                    separators=(",", ":")).encode()


class _Stats:
    outcome = "done"
    error_code = None
    chunks = 50
    prompt_tokens = 12
    completion_tokens = 50
    first_event_after = 0.01
    duration = 1.0


async def _recorder_cpu(url: str, streams: int) -> float:
    """CPU µs per record: 50 taps (one a read), finish, parse and write, all in this process."""
    from promptcast.storage.database import Database
    from promptcast.storage.library import Library

    db = Database(url)
    await db.upgrade()
    library = Library(db, record_queue=streams + 1)
    recorder = library.recorder
    assert recorder is not None
    writer = asyncio.get_running_loop().create_task(recorder.run())
    frames = [b"id: abcdefghijkl.%d\ndata: %s\n\n" % (i, _CHUNK) for i in range(50)]
    request = {"prompt": "你是一个客服助手。" * 10, "type": "optimize", "model": "bench"}
    start = time.process_time()
    for i in range(streams):
        capture = recorder.capture(f"s{i}", owner="local", kind="optimize", model="bench",
                                   mode="optimize", request=request, input=request["prompt"])
        for frame in frames:
            capture.write(frame)
        capture.write(b"id: abcdefghijkl.51\ndata: [DONE]\n\n")
        capture.finish(_Stats())
        if i % 100 == 99:
            await asyncio.sleep(0)  # streams end over time, not all in one loop turn
    writer.cancel()  # a batch it had taken goes back to the queue
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    await recorder.flush(120)
    cpu = time.process_time() - start
    assert recorder.written == streams, recorder.written
    await db.aclose()
    return cpu / streams * 1e6


def measure_recorder(pg_url: str | None, quick: bool) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="promptcast-bench-rec-"))
    streams = 500 if quick else 3000
    out = {"sqlite": round(asyncio.run(_recorder_cpu(f"sqlite:///{tmp / 'r.db'}", streams)), 1)}
    if pg_url:
        out["postgresql"] = round(asyncio.run(_recorder_cpu(pg_url, streams)), 1)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------- part 2: listing and search

_ZH = "您好，请问有什么可以帮您？关于退款、物流延迟和发票的问题，我们会在二十四小时内处理。"
_EN = ("You are a customer-service assistant for an online shop. Answer questions about "
       "refunds, shipping delays and invoices politely and briefly. ")


async def _fill(url: str, n: int) -> None:
    from promptcast.storage.database import Database
    from promptcast.storage.runs import RunRecord, Runs
    from promptcast.storage.tables import now_us

    rnd = random.Random(20)
    db = Database(url)
    await db.upgrade()
    runs = Runs(db)
    start = now_us() - n * 1_000_000
    batch: list[RunRecord] = []
    for i in range(n):
        base = _ZH if i % 2 else _EN
        text = (base * 40)[: rnd.randint(300, 2000)]
        prompt = (base * 10)[: rnd.randint(100, 600)]
        if i % 100 == 7:
            text += " rare-marker-7 "
        batch.append(RunRecord(id=f"r{i:06d}", owner="local", kind="optimize", model="qwen-max",
                               mode="optimize", request={"prompt": prompt, "type": "optimize"},
                               input=prompt, outcome="done", text=text, duration_ms=900.0,
                               created_at=start + i * 1_000_000, chunks=50,
                               completion_tokens=len(text) // 2))
        if len(batch) == 1000:
            await runs.insert(batch)
            batch = []
    await runs.insert(batch)
    await db.aclose()


def _time(port: int, path: str, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            body = response.read()
        times.append((time.perf_counter() - t0) * 1000)
    json.loads(body)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "max_ms": round(times[-1], 2), "n": n}


def measure_listing(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="promptcast-bench-list-"))
    url = f"sqlite:///{tmp / 'runs.db'}"
    n = 2_000 if args.quick else 10_000
    asyncio.run(_fill(url, n))
    port = free_port()
    proc = spawn(pinned(TARGET_CPU, [PROMPTCAST, "serve", "--port", str(port),
                                     "--database-url", url]), tmp / "serve.log", cwd=ROOT)
    try:
        wait_http(port, "/healthz", 60, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs?limit=1",
                                    timeout=10) as response:
            cursor_page = json.loads(response.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs?limit=50&cursor="
                                    f"{cursor_page['next_cursor']}", timeout=10):
            pass
        deep = cursor_page["next_cursor"]
        reps = 50 if args.quick else 200
        queries = {
            "list, first page of 50": "/api/runs?limit=50",
            "list, a page by cursor": f"/api/runs?limit=50&cursor={deep}",
            "search, common word (refunds)": "/api/runs?limit=50&q=refunds",
            "search, Chinese (退款)": "/api/runs?limit=50&q=%E9%80%80%E6%AC%BE",
            "search, rare (1 run in 100)": "/api/runs?limit=50&q=rare-marker-7",
            "search, no match": "/api/runs?limit=50&q=no-such-words-anywhere",
        }
        _time(port, "/api/runs?limit=50", 20)  # warm the page cache and the pool
        return {"runs": n, "results": {name: _time(port, path, reps)
                                       for name, path in queries.items()}}
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def table(rows: list[dict[str, Any]], listing: dict[str, Any],
          recorder: dict[str, float]) -> str:
    off = next((r for r in rows if r["target"] == "library-off"), None)
    nginx = next((r for r in rows if r["target"] == "nginx"), None)
    lines = ["| target | CPU µs/chunk (runs) | vs off | vs nginx | errors | records |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['target']} | failed: {r['failed'][:80]} | | | | |")
            continue
        cpu = r["cpu_us_per_chunk"]
        runs = ", ".join(f"{x:g}" for x in r.get("runs_cpu_us_per_chunk", [cpu]))
        vs_off = f"{(cpu / off['cpu_us_per_chunk'] - 1) * 100:+.1f} %" if off else "–"
        vs_nginx = f"{cpu / nginx['cpu_us_per_chunk']:.2f}×" if nginx else "–"
        records = (f"{int(r.get('records_written', 0))} written, "
                   f"{int(r.get('records_dropped', 0))} dropped"
                   if r["target"].startswith("library-") and r["target"] != "library-off"
                   else "–")
        lines.append(f"| {r['target']} | {cpu:g} ({runs}) | {vs_off} | {vs_nginx} | "
                     f"{r['errors']} | {records} |")
    lines += ["", "The recorder alone, in one process (a stream of 50 chunks: 51 taps, its end, "
              "its text found and its row written in a batch):", ""]
    lines += [f"- {db}: {us:g} µs of CPU a run record, {us / 50:.2f} µs a chunk"
              for db, us in recorder.items()]
    lines += ["", f"Listing and searching {listing['runs']:,} runs on SQLite (GET /api/runs, "
              "one request at a time, over HTTP):", "",
              "| request | p50 ms | p95 ms | max ms |", "|---|---|---|---|"]
    for name, t in listing["results"].items():
        lines.append(f"| {name} | {t['p50_ms']} | {t['p95_ms']} | {t['max_ms']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the stream load")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--split", action="store_true",
                        help="measure the split gateway (make bench's headline) instead of "
                        "in-process")
    parser.add_argument("--recorder-only", action="store_true",
                        help="skip the stream load (parts 1b and 2 only)")
    args = parser.parse_args(argv)
    pg = None if args.no_postgresql else Postgres()
    try:
        pg_url = pg.start() if pg else None
        recorder = measure_recorder(pg_url, args.quick)
        rows = [] if args.recorder_only else measure_streams(args, pg_url)
    finally:
        if pg is not None:
            pg.stop()
    listing = measure_listing(args)
    report = {"timestamp": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), "streams": rows,
              "recorder_us_per_record": recorder, "listing": listing}
    name = "library-split.json" if args.split else "library.json"
    out = RESULTS / ("tmp" if args.quick or args.recorder_only else "") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(table(rows, listing, recorder))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
