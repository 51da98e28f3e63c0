"""A load generator for SSE streams: many concurrent streams, each checked end to end.

Raw asyncio protocols on uvloop with httptools' C parser (chunked decoding),
so one process holds 10,000 streams and reads 50,000 chunks/s without
becoming what is measured. Each stream is one fresh connection, one POST, one
event stream; it passes only if every content chunk arrives in order
(`~kNNNNN~` indices 0, 1, 2, ...), the final chunk's `~eNNNNN~` count matches,
`data: [DONE]` ends it and the HTTP response ends cleanly.

Recorded: time to first byte (request start to the first `data:` event), the
gap between consecutive events of a stream, errors by kind, peak concurrent
open streams, chunks/s, and the longest silence: the longest time in which no
event arrived on any stream while at least 100 were open (None if fewer ever
were). This generator's own pauses set its floor (a few ms: compare with a
run without a relay); well above that, the relay's whole event loop stood
still (a full garbage collection, say).
`--timeline FILE` also writes every gap with its arrival time, for finding
when the slow ones happened. Bounded: `--streams` streams, `--deadline` seconds,
loopback only. Prints one JSON object on stdout.

    python -m bench.loadgen --port 8000 --path /optimize-stream --streams 100 --chunks 50 --gap 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import secrets
import sys
import time
from array import array
from collections import Counter
from time import monotonic
from typing import Any

import httptools
import orjson

from .common import StreamSpec, check_loopback

# Open streams from which a silence counts: fewer may simply have nothing to say.
SILENCE_MIN_OPEN = 100


def percentiles(values: Any, points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles (ms), plus max and count."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    out: dict[str, float] = {"n": len(data)}
    for p in points:
        rank = max(0, min(len(data) - 1, round(p / 100 * len(data) + 0.5) - 1))
        out[f"p{p:g}"] = round(data[rank], 3)
    out["max"] = round(data[-1], 3)
    out["mean"] = round(sum(data) / len(data), 3)
    return out


class Run:
    """Everything one load run shares: settings, counters, samples."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.loop = asyncio.get_running_loop()
        self.args = args
        self.host = args.host
        self.port = args.port
        self.ttfb: list[float] = []
        self.gaps = array("d")
        self.gap_at = array("d")  # arrival times, with --timeline
        self.timeline = bool(args.timeline)
        self.last_arrival = 0.0
        self.longest_silence = 0.0
        self.errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.completed = 0
        self.chunks = 0
        self.heartbeats = 0
        self.open = 0
        self.peak_open = 0
        self.started = 0
        self.finished = 0
        self.first_start = 0.0
        self.last_end = 0.0
        self.clients: set[StreamClient] = set()
        self.all_done = asyncio.Event()
        self.spec = StreamSpec(n=args.chunks, gap=args.gap, delay=args.delay)
        if args.hold:
            self.spec.hold = args.streams
            self.spec.grp = secrets.token_hex(6)
            self.spec.linger = args.linger
            self.spec.maxhold = args.maxhold
        self.request = self._request()

    def _request(self) -> bytes:
        marker = self.spec.marker()
        if self.args.kind == "chat":
            body = {"model": self.args.model, "stream": True,
                    "messages": [{"role": "user", "content": f"{marker} Rewrite this."}]}
        else:
            body = {"prompt": f"{marker} You are a helpful support bot.", "type": "optimize",
                    "model": self.args.model}
            if self.args.resumable:
                body["resumable"] = True
        payload = orjson.dumps(body)
        head = (
            f"POST {self.args.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: text/event-stream\r\n"
            f"Content-Length: {len(payload)}\r\n"
        )
        for header in self.args.header or ():
            head += header + "\r\n"
        return head.encode() + b"\r\n" + payload

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if kind not in self.examples and detail:
            self.examples[kind] = detail[:300]

    def stream_ended(self, client: StreamClient, ok: bool, now: float) -> None:
        self.clients.discard(client)
        self.finished += 1
        self.last_end = max(self.last_end, now)
        if ok:
            self.completed += 1
        if self.finished >= self.args.streams:
            self.all_done.set()
        elif self.started < self.args.streams and self.args.concurrency < self.args.streams:
            self.start_next()

    def start_next(self) -> None:
        if self.started >= self.args.streams:
            return
        self.started += 1
        self.loop.create_task(self.open_stream())

    async def open_stream(self) -> None:
        client = StreamClient(self)
        self.clients.add(client)
        try:
            await self.loop.create_connection(lambda: client, self.host, self.port)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            client.fail(f"connect:{name}", str(exc))


class StreamClient(asyncio.Protocol):
    """One stream: send the request, parse the response, check every event."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.start = monotonic()
        if not run.first_start:
            run.first_start = self.start
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.buf = b""
        self.cr = False
        self.next = 0
        self.final = False
        self.done = False
        self.last = 0.0
        self.ended = False
        self.opened = False
        self.errbody = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.ended:  # failed (deadline) while connecting
            transport.close()
            return
        run = self.run
        self.opened = True
        run.open += 1
        if run.open > run.peak_open:
            run.peak_open = run.open
        transport.write(run.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail("http_parse", str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            why = f" ({type(exc).__name__}: {exc})" if exc else " (closed by the server)"
            status = f"status {self.status}" if self.status else "no response"
            self.fail("eof", f"connection lost after {self.next} chunks"
                      f"{' and [DONE]' if self.done else ''}, {status}{why}")

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            if len(self.errbody) < 400:
                self.errbody += body
            return
        if self.cr or b"\r" in body:
            body = self._normalise(body)
        buf = self.buf + body if self.buf else body
        end = buf.find(b"\n\n")
        if end < 0:
            self.buf = buf
            return
        now = monotonic()
        start = 0
        while end >= 0:
            self._event(buf, start, end, now)
            start = end + 2
            end = buf.find(b"\n\n", start)
        self.buf = buf[start:]

    def on_message_complete(self) -> None:
        if self.ended:
            return
        if self.status != 200:
            self.fail(f"http_{self.status}", self.errbody.decode("utf-8", "replace"))
        elif not self.done:
            self.fail("incomplete", f"response ended after {self.next} chunks, no [DONE]")
        elif not self.final and not self.run.args.no_final:
            self.fail("incomplete", "no final chunk before [DONE]")
        else:
            self._end(True)

    # checks
    def _normalise(self, body: bytes) -> bytes:
        if self.cr and body.startswith(b"\n"):
            body = body[1:]
        self.cr = body.endswith(b"\r")
        return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _event(self, buf: bytes, start: int, end: int, now: float) -> None:
        pos = buf.find(b"data:", start, end)
        if pos < 0:
            self.run.heartbeats += 1  # a comment or a data-less block
            return
        pos += 5
        if buf[pos] == 0x20:
            pos += 1
        line_end = buf.find(b"\n", pos, end)
        payload = buf[pos:line_end if line_end >= 0 else end]
        run = self.run
        if (run.open >= SILENCE_MIN_OPEN and run.last_arrival
                and now - run.last_arrival > run.longest_silence):
            run.longest_silence = now - run.last_arrival
        run.last_arrival = now
        if self.last:
            run.gaps.append((now - self.last) * 1000)
            if run.timeline:
                run.gap_at.append(now)
        else:
            run.ttfb.append((now - self.start) * 1000)
        self.last = now
        if self.done:
            self.fail("after_done", payload[:200].decode("utf-8", "replace"))
            return
        tag = payload.find(b"~k")
        if tag >= 0:
            index = int(payload[tag + 2:tag + 7])
            if index != self.next:
                self.fail("out_of_order", f"chunk {index} where {self.next} was due")
                return
            self.next += 1
            run.chunks += 1
            return
        if payload == b"[DONE]":
            self.done = True
            expected = run.spec.n
            if not run.spec.hold and self.next != expected:
                self.fail("incomplete", f"[DONE] after {self.next} of {expected} chunks")
            return
        tag = payload.find(b"~e")
        if tag >= 0:
            count = int(payload[tag + 2:tag + 7])
            if count != self.next:
                self.fail("count_mismatch", f"final chunk says {count}, got {self.next}")
                return
            self.final = True
            run.chunks += 1
            return
        if b'"content"' in payload or payload.startswith(b"{"):
            # A chunk a relay added (a role-only first chunk, a usage chunk): relayed, unchecked.
            if b'"error"' in payload or b'"code"' in payload:
                self.fail("error_event", payload[:300].decode("utf-8", "replace"))
                return
            run.chunks += 1
            return
        self.fail("unexpected_event", payload[:300].decode("utf-8", "replace"))

    def fail(self, kind: str, detail: str = "") -> None:
        if self.ended:
            return
        self.run.error(kind, detail)
        self._end(False)

    def _end(self, ok: bool) -> None:
        self.ended = True
        run = self.run
        if self.opened:
            run.open -= 1
        if self.transport is not None:
            self.transport.close()
        run.stream_ended(self, ok, monotonic())


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    loop = run.loop
    t0 = monotonic()
    wall0 = time.time()
    if args.concurrency >= args.streams:
        step = args.ramp / args.streams if args.streams > 1 else 0.0
        for i in range(args.streams):
            loop.call_later(i * step, run.start_next)
    else:
        for _ in range(args.concurrency):
            run.start_next()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.all_done.wait(), args.deadline)
    for client in list(run.clients):
        client.fail("timeout", f"still open after the {args.deadline:g} s deadline "
                    f"({client.next} chunks)")
    if args.timeline:
        with open(args.timeline, "wb") as f:  # noqa: ASYNC230 (after the run)
            f.write(orjson.dumps({"start": t0, "gap_ms": list(run.gaps),
                                  "at_s": [at - t0 for at in run.gap_at], "ttfb_ms": run.ttfb}))
    never = args.streams - run.started
    if never:
        run.errors["not_started"] += never
    await asyncio.sleep(0)
    end = run.last_end or monotonic()
    duration = max(end - (run.first_start or t0), 1e-9)
    return {
        "streams": args.streams,
        "concurrency": min(args.concurrency, args.streams),
        "chunks_per_stream": None if args.hold else args.chunks,
        "completed": run.completed,
        "errors": sum(run.errors.values()),
        "error_kinds": dict(run.errors),
        "error_examples": run.examples,
        "chunks": run.chunks,
        "heartbeats": run.heartbeats,
        "peak_open": run.peak_open,
        "duration_s": round(duration, 4),
        "chunks_per_s": round(run.chunks / duration, 1),
        "ttfb_ms": percentiles(run.ttfb),
        "gap_ms": percentiles(run.gaps),
        "longest_silence_ms": (None if args.hold or run.peak_open < SILENCE_MIN_OPEN
                               else round(run.longest_silence * 1000, 3)),
        "wall_start": wall0,
        "mono_start": t0,
        "mono_end": end,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/optimize-stream")
    p.add_argument("--kind", choices=["optimize", "chat"], default="optimize",
                   help="request body: promptcast's optimize body or an OpenAI chat body")
    p.add_argument("--model", default="bench")
    p.add_argument("--resumable", action="store_true",
                   help="ask for resumable streams (optimize body only)")
    p.add_argument("--header", action="append", help="extra request header 'Name: value'")
    p.add_argument("--streams", type=int, default=100, help="streams in all (max 20000)")
    p.add_argument("--concurrency", type=int, default=0,
                   help="streams open at once (default: all of them, ramped)")
    p.add_argument("--chunks", type=int, default=50, help="content chunks per stream")
    p.add_argument("--gap", type=float, default=20.0, help="ms between chunks")
    p.add_argument("--delay", type=float, default=0.0, help="ms before the first chunk")
    p.add_argument("--ramp", type=float, default=0.0, help="seconds over which streams start")
    p.add_argument("--hold", action="store_true",
                   help="hold all streams open until every one is open (upstream barrier)")
    p.add_argument("--linger", type=float, default=2000.0, help="ms held after the barrier")
    p.add_argument("--maxhold", type=float, default=60.0, help="s the barrier waits at most")
    p.add_argument("--no-final", action="store_true", help="do not require the final chunk")
    p.add_argument("--deadline", type=float, default=120.0, help="seconds for the whole run")
    p.add_argument("--output", help="write the JSON result here (default: stdout)")
    p.add_argument("--timeline", help="also write each gap and its arrival time here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_loopback(args.host)
    if not 1 <= args.streams <= 20_000:
        raise SystemExit("--streams must be 1..20000")
    if args.deadline > 900:
        raise SystemExit("--deadline is at most 900 s")
    if args.concurrency <= 0:
        args.concurrency = args.streams
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(run_load(args))
    result["pid"] = os.getpid()
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
