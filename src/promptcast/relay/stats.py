"""What a relay is told (its limits) and what it tells (a finished stream's figures)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    DONE = "done"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Limits:
    """A stream's limits, in seconds; no heartbeats with `heartbeat_interval` None."""

    first_token_timeout: float
    idle_timeout: float
    total_timeout: float
    heartbeat_interval: float | None


@dataclass(slots=True)
class StreamStats:
    """What one structured log line says about a finished stream."""

    stream_id: str
    started: float = field(default_factory=time.monotonic)
    first_event_after: float | None = None
    duration: float = 0.0
    chunks: int = 0
    outcome: Outcome = Outcome.CANCELLED
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
