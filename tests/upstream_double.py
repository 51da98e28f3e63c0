"""A scripted OpenAI-compatible upstream: a real HTTP/1.1 server on a loopback port.

It runs in its own thread with its own event loop, so sync tests, async tests
and browser tests can all use it. It speaks the real wire format (chunked
`text/event-stream` with `chat.completion.chunk` JSON and `data: [DONE]`) and
records what it saw: requests, open connections, and clients that went away.

    double.enqueue(Script.chat(["Hel", "lo"], gap=0.05))
    double.enqueue(Script.chat(["a", "b"], then="drop"))     # close mid-stream
    double.enqueue(Script.error(429, "slow down", retry_after="7"))
    gate = double.gate(); double.enqueue(Script.chat(["a", gate, "b"]))  # waits for gate.set()
    double.responder = lambda seen: Script.chat([answer_for(seen.json())])  # by request
    double.respond = echo_system          # with the queue empty: answer each request by its body
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

Step = bytes | float | threading.Event


def chunk_json(content: str | None = None, *, finish: str | None = None, role: str | None = None,
               usage: dict[str, int] | None = None, model: str = "scripted") -> str:
    """The JSON text of one `chat.completion.chunk`, as a real upstream writes it."""
    choices: list[dict[str, Any]] = []
    if content is not None or finish is not None or role is not None:
        delta: dict[str, str] = {}
        if role:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish})
    body: dict[str, Any] = {"id": "chatcmpl-double", "object": "chat.completion.chunk",
                            "created": 1700000000, "model": model,
                            "system_fingerprint": None, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


@dataclass
class Script:
    """What the double answers to one request: status, headers, then body steps.

    A step is bytes to write (one chunk on the wire), a float to pause that many
    seconds, or a `threading.Event` to wait for. `then` says how it ends:
    "end" (a proper end of body), "drop" (close the socket mid-body), or
    "hang" (write nothing more until the client goes away).
    """

    steps: list[Step] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "text/event-stream; charset=utf-8"}
    )
    then: str = "end"
    first_delay: float = 0.0

    @classmethod
    def chat(cls, pieces: list[str | float | threading.Event], *, gap: float = 0.0,
             then: str = "end", done: bool = True, finish: str | None = "stop",
             usage: bool = True, first_delay: float = 0.0) -> Script:
        """Chunks carrying `pieces` as content deltas, `gap` seconds apart, then `[DONE]`."""
        steps: list[Step] = [event(chunk_json("", role="assistant"))]
        tokens = 0
        for piece in pieces:
            if isinstance(piece, str):
                if gap and tokens:
                    steps.append(gap)
                steps.append(event(chunk_json(piece)))
                tokens += 1
            else:
                steps.append(piece)
        if then == "end":
            if finish is not None:
                steps.append(event(chunk_json(finish=finish)))
            if usage:
                steps.append(event(chunk_json(usage={"prompt_tokens": 12,
                                                     "completion_tokens": tokens,
                                                     "total_tokens": 12 + tokens})))
            if done:
                steps.append(b"data: [DONE]\n\n")
        return cls(steps=steps, then=then, first_delay=first_delay)

    @classmethod
    def error(cls, status: int, message: str, *, retry_after: str | None = None) -> Script:
        """A JSON error body, as OpenAI and DashScope send one."""
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = json.dumps({"error": {"message": message, "type": "error", "code": str(status)}})
        return cls(steps=[body.encode()], status=status, headers=headers)

    @classmethod
    def raw(cls, *steps: Step, then: str = "end", content_type: str = "text/event-stream",
            status: int = 200) -> Script:
        return cls(steps=list(steps), then=then, status=status,
                   headers={"Content-Type": content_type})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when the request arrived

    def json(self) -> Any:
        return json.loads(self.body)

    def messages(self) -> list[dict[str, str]]:
        """The chat messages of a chat completions request."""
        messages: list[dict[str, str]] = self.json()["messages"]
        return messages


class UpstreamDouble:
    """The scripted server; `base_url` is what a model entry's `base_url` should be."""

    def __init__(self) -> None:
        self._scripts: list[Script] = []
        self.default: Script = Script.chat(["Hello", ",", " world", "!"])
        # Answers by request when set (and it returns a Script): deterministic whatever
        # order concurrent requests arrive in. Runs on the double's thread.
        self.responder: Callable[[Seen], Script | None] | None = None
        self.record = True  # False: keep no request (long runs whose memory is measured)
        # Answers a request from its body when no script is queued (e.g. echo_system).
        self.respond: Callable[[Seen], Script] | None = None
        self.requests: list[Seen] = []
        self.open_connections = 0
        self.client_closed = 0     # streams the client abandoned before the script ended
        self.completed = 0         # scripts written to the end
        self.written = 0           # body bytes written (and taken by the kernel)
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, name="upstream-double", daemon=True)
        self._started = threading.Event()

    # -- control ---------------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        with self._cond:
            self._scripts.extend(scripts)

    @staticmethod
    def gate() -> threading.Event:
        return threading.Event()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (re-checked on every change) or `timeout`."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    async def until(self, predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
        """`wait_for` for async tests: waits in a thread, so the test's own loop keeps
        running (asyncio closes a socket only on the loop's next turn)."""
        return await anyio.to_thread.run_sync(self.wait_for, predicate, seconds)

    def _changed(self, **delta: int) -> None:
        with self._cond:
            for name, value in delta.items():
                setattr(self, name, getattr(self, name) + value)
            self._cond.notify_all()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> UpstreamDouble:
        self._thread.start()
        self._started.wait(5)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock)
            self._started.set()

        self._loop.run_until_complete(boot())
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.close()

    # -- HTTP ------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._changed(open_connections=1)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._changed(open_connections=-1)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        method, path, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        seen = Seen(method, path, headers, body)
        scripted = self.responder(seen) if self.responder is not None and body else None
        with self._cond:
            if self.record:
                self.requests.append(seen)
            if scripted is not None:
                script = scripted
            elif self._scripts:
                script = self._scripts.pop(0)
            elif self.respond is not None and not path.endswith("/models"):
                script = self.respond(seen)
            else:
                script = self.default
            self._cond.notify_all()
        if path.endswith("/models"):
            payload = json.dumps({"object": "list", "data": [{"id": "scripted"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(payload), payload))
            await writer.drain()
            return False
        return await self._play(script, reader, writer)

    async def _play(self, script: Script, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        # A read that completes means the client closed (or sent junk): either
        # way the stream is abandoned, which is what the tests watch for.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            if script.first_delay and await self._pause(script.first_delay, gone):
                return self._abandoned()
            reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests",
                      500: "Internal Server Error", 503: "Service Unavailable"}
            head = f"HTTP/1.1 {script.status} {reason.get(script.status, 'Status')}\r\n"
            for name, value in script.headers.items():
                head += f"{name}: {value}\r\n"
            # One response per connection: the watch for a departed client
            # reads from the socket, so it must not share it with a next request.
            head += "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            writer.write(head.encode("latin-1"))
            await writer.drain()
            last = len(script.steps) - 1
            for index, step in enumerate(script.steps):
                if isinstance(step, bytes):
                    writer.write(b"%x\r\n%s\r\n" % (len(step), step))
                    await writer.drain()
                    self._changed(written=len(step))
                    if index == last and script.then == "end":
                        break  # a client may rightly hang up once it has [DONE]
                    # Let each step leave as its own TCP segment.
                    if await self._pause(0.0005, gone):
                        return self._abandoned()
                elif isinstance(step, threading.Event):
                    while not step.is_set():
                        if await self._pause(0.01, gone):
                            return self._abandoned()
                elif await self._pause(step, gone):
                    return self._abandoned()
            if script.then == "drop":
                writer.transport.abort()
                self._changed(completed=1)
                return False
            if script.then == "hang":
                await gone
                return self._abandoned()
            self._changed(completed=1)
            with contextlib.suppress(ConnectionError):
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            return False
        except ConnectionError:
            return self._abandoned()
        finally:
            gone.cancel()

    async def _pause(self, seconds: float, gone: asyncio.Future[bytes]) -> bool:
        """Sleep `seconds`; True if the client went away meanwhile."""
        if gone.done():
            return True
        done, _ = await asyncio.wait({gone}, timeout=seconds)
        return bool(done)

    def _abandoned(self) -> bool:
        self._changed(client_closed=1)
        return False


def system_prompt(seen: Seen) -> str:
    """The system message of a chat completions request."""
    messages = seen.json()["messages"]
    return "".join(m["content"] for m in messages if m["role"] == "system")


def echo_system(seen: Seen, *, size: int = 3, gap: float = 0.0,
                gate: threading.Event | None = None) -> Script:
    """A chat answering with the request's system message, `size` characters a chunk; with
    a `gate`, the first chunk goes out at once and the rest waits for `gate.set()`."""
    text = system_prompt(seen)
    pieces: list[str | float | threading.Event] = [
        text[i:i + size] for i in range(0, len(text), size)]
    if gate is not None:
        pieces.insert(1, gate)
    return Script.chat(pieces, gap=gap)


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """An HTTP/1.1 request head: method, target, and headers with lower-case names."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` briefly for state that has no condition to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
