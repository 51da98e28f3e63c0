"""A stand-in app and server callables for testing plain ASGI middleware on its own."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send


class Inner:
    """The app behind the middleware: records the scope and send it was called with."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.sends: list[Send] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        self.sends.append(send)


async def receive() -> Message:
    return {"type": "http.disconnect"}


async def send(message: Message) -> None:
    raise AssertionError(f"the middleware sent {message!r} on success")
