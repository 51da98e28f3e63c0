"""A small test client that reads an event stream as it arrives, keeping the raw bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from promptcast.wire.sse import Decoder, Event


@dataclass
class Received:
    status: int
    headers: httpx.Headers
    raw: bytes = b""
    events: list[Event] = field(default_factory=list)
    body: Any = None

    @property
    def data(self) -> list[str]:
        return [e.data for e in self.events]

    @property
    def content(self) -> str:
        """The concatenated `delta.content` of every chunk."""
        text = ""
        for e in self.events:
            if e.event == "message" and e.data != "[DONE]":
                for choice in json.loads(e.data).get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
        return text

    @property
    def terminal(self) -> Event:
        return self.events[-1]

    def error(self) -> dict[str, Any]:
        return dict(json.loads(self.terminal.data))


async def events_of(response: httpx.Response, raw: bytearray | None = None) -> AsyncIterator[Event]:
    decoder = Decoder()
    async for chunk in response.aiter_raw():
        if raw is not None:
            raw += chunk
        for event in decoder.feed(chunk):
            yield event


async def _read(response: httpx.Response) -> Received:
    """The whole stream, or the JSON error (or empty body) of a non-stream answer."""
    got = Received(response.status_code, response.headers)
    if response.status_code != 200 or not response.headers.get(
        "content-type", ""
    ).startswith("text/event-stream"):
        await response.aread()
        got.raw = response.content
        if response.content:
            got.body = response.json()
        return got
    raw = bytearray()
    async for event in events_of(response, raw):
        got.events.append(event)
    got.raw = bytes(raw)
    return got


async def post_stream(url: str, body: dict[str, Any] | bytes, *,
                      headers: dict[str, str] | None = None) -> Received:
    """POST and read the whole stream (or the JSON error)."""
    async with httpx.AsyncClient(timeout=30) as client:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        hdrs = {"Accept": "text/event-stream", **(headers or {})}
        if isinstance(body, bytes):
            hdrs.setdefault("Content-Type", "application/json")
        async with client.stream("POST", url, headers=hdrs, **kwargs) as response:
            return await _read(response)


async def get_stream(url: str, headers: dict[str, str] | None = None) -> Received:
    """GET (a resume) and read the whole stream, or the error, or a 204's empty body."""
    async with httpx.AsyncClient(timeout=15) as client, client.stream(
        "GET", url, headers=headers or {}
    ) as response:
        return await _read(response)
