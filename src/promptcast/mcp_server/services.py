"""What the MCP server needs of a running promptcast: the server's `Runtime` has all of it.

A protocol, not an import of `server/runtime.py`: the server's app mounts this
layer, so this layer cannot reach up into the server for its types.
"""

from __future__ import annotations

from typing import Protocol

from promptcast.ops.metrics import Metrics
from promptcast.relay.drain import Drain
from promptcast.relay.source import Source
from promptcast.relay.stats import Limits
from promptcast.service.model_service import ModelService
from promptcast.settings import Settings
from promptcast.storage.library import Library


class Services(Protocol):
    """The shared resources a tool call uses (the lifespan's `Runtime`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def service(self) -> ModelService:
        """The model service in this process: chats (`try_prompt`)."""

    @property
    def gateway(self) -> Source:
        """Where rewrites come from: the model service here, or another promptcast's."""

    @property
    def limits(self) -> Limits: ...

    @property
    def drain(self) -> Drain: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def library(self) -> Library | None:
        """Saved prompts, templates and test sets; None when no database is configured."""
