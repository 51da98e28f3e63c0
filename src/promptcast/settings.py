"""The one settings object, built once from the environment (and CLI flags) at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .models import ModelTable

PREFIX = "PROMPTCAST_"


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable; every field is `PROMPTCAST_<FIELD>` in the environment."""

    host: str = "127.0.0.1"
    port: int = 8000
    upstream_url: str | None = None
    models_file: Path | None = None
    default_model: str | None = None

    first_token_timeout: float = 30.0
    idle_timeout: float = 30.0
    total_timeout: float = 120.0
    heartbeat_interval: float = 15.0
    connect_timeout: float = 10.0

    max_body_bytes: int = 64 * 1024
    max_prompt_chars: int = 20_000
    max_opening_chars: int = 2_000
    max_event_bytes: int = 1024 * 1024

    local_queue_size: int = 8
    local_max_tokens: int = 512
    local_threads: int = 0
    local_context: int = 8192
    local_model_path: Path | None = None

    redis_url: str | None = None
    resume_grace: float = 30.0
    stream_ttl: float = 600.0
    stream_max_events: int = 20_000
    stream_max_bytes: int = 8 * 1024 * 1024
    store_max_bytes: int = 256 * 1024 * 1024
    lease_ttl: float = 5.0

    drain_timeout: float = 30.0

    log_level: str = "info"

    models: ModelTable = field(default_factory=lambda: ModelTable.build({}), compare=False)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read `PROMPTCAST_*` from `environ` (default: the process environment); flags win."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "models":
                continue
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings._check()
        try:
            table = ModelTable.build(env, settings.models_file, settings.default_model)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        return replace(settings, models=table)

    def _check(self) -> None:
        for name in ("first_token_timeout", "idle_timeout", "total_timeout",
                     "heartbeat_interval", "connect_timeout", "resume_grace", "stream_ttl",
                     "lease_ttl", "drain_timeout"):
            if not getattr(self, name) > 0:  # NaN is not a number of seconds either
                raise SettingsError(f"{PREFIX}{name.upper()} must be a positive number of seconds")
        for name in ("max_body_bytes", "max_prompt_chars", "max_opening_chars",
                     "max_event_bytes", "local_queue_size", "local_max_tokens", "local_context",
                     "stream_max_events", "stream_max_bytes", "store_max_bytes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be a positive integer")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise SettingsError(f"{PREFIX}REDIS_URL must be a redis://, rediss:// or unix:// URL")
        if self.upstream_url is not None and not self.upstream_url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError(f"{PREFIX}UPSTREAM_URL must be an http:// or https:// URL")


def _parse(name: str, raw: str, kind: Any) -> Any:
    kind = str(kind)
    var = PREFIX + name.upper()
    try:
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("int"):
            return int(raw)
    except ValueError:
        expected = "a number" if kind.startswith("float") else "an integer"
        raise SettingsError(f"{var} must be {expected}, not {raw!r}") from None
    if kind.startswith("Path"):
        return Path(raw)
    if name == "upstream_url":
        return raw.rstrip("/")
    return raw
