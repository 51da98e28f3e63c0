"""The one settings object, built once from the environment (and CLI flags) at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from promptcast.models import ModelTable
from promptcast.proxies import Proxies

PREFIX = "PROMPTCAST_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The upstream HTTP transport: httpx through a proxy, the built-in client otherwise.
UPSTREAM_TRANSPORTS = ("auto", "builtin", "httpx")
# Fields read from other variables than PROMPTCAST_<FIELD>.
_NOT_PREFIXED = ("models", "proxies")


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
    upstream_transport: str = "auto"

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

    # -- security (issue 6): see auth.py and ratelimit.py --------------------
    api_keys: str | None = None          # "k1,k2", or "@/path/to/file" with one key a line
    rate_limit_per_minute: int = 0       # requests per key (or client address); 0 = off
    max_concurrent_streams: int = 0      # open streams per key (or client address); 0 = off
    cors_origins: str | None = None      # "https://a.example,https://b.example"; unset = off
    allow_anonymous: bool = False        # serve a non-loopback address without keys

    # -- evaluation (issue 21): see evals/ and docs/eval.md ----------------
    eval_concurrency: int = 4            # answers and judgements in flight per run, by default
    eval_max_concurrency: int = 32       # the most a run's body may ask for
    eval_max_cells: int = 500            # prompts x cases per run (422 beyond)
    eval_max_case_chars: int = 8_000     # one case's text: messages, opening, rubric (422 beyond)
    eval_max_body_bytes: int = 4 * 1024 * 1024   # POST /eval's body cap (413 beyond)
    eval_timeout: float = 3600.0         # a whole run's limit, like total_timeout for one stream
    eval_max_retry_wait: float = 60.0    # longest Retry-After honoured on a 429; longer fails
    eval_judge: str | None = None        # the default judge model (else the strongest keyed one)

    log_level: str = "info"

    # -- library (issue 20): see storage/ ------------------------------------
    # sqlite:///path or postgresql://user:pass@host/db; None: the library is off.
    # from_env fills it with a file in the user's data directory ("off" keeps it off).
    database_url: str | None = None
    record_runs: bool = True             # a run record for every stream
    record_queue: int = 10_000           # records waiting for the database; beyond, dropped
    import_max_bytes: int = 32 * 1024 * 1024  # the largest POST /api/import document

    models: ModelTable = field(default_factory=lambda: ModelTable.build({}), compare=False)
    # HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (proxies.py says how they combine).
    proxies: Proxies = field(default_factory=Proxies, compare=False)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read `PROMPTCAST_*` and the proxy variables from `environ` (default: the process
        environment); flags win."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in _NOT_PREFIXED:
                continue
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.type)
        if "proxies" not in overrides:
            try:
                values["proxies"] = Proxies.from_env(env)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        # -- library (issue 20) ----------------------------------------------
        if "database_url" not in values:
            values["database_url"] = default_database_url(env)
        elif str(values["database_url"]).strip().lower() in ("off", "none"):
            values["database_url"] = None
        settings = cls(**values)
        settings._check()
        try:
            table = ModelTable.build(env, settings.models_file, settings.default_model)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        if settings.eval_judge is not None and settings.eval_judge not in table:
            raise SettingsError(
                f"{PREFIX}EVAL_JUDGE={settings.eval_judge!r} is not a configured model; "
                f"known: {', '.join(table.names())}"
            )
        return replace(settings, models=table)

    def secrets(self) -> list[str]:
        """What error messages are scrubbed of: the models' keys, the proxies' passwords."""
        return [*self.models.secrets(), *self.proxies.secrets()]

    def _check(self) -> None:
        for name in ("first_token_timeout", "idle_timeout", "total_timeout",
                     "heartbeat_interval", "connect_timeout", "resume_grace", "stream_ttl",
                     "lease_ttl", "drain_timeout", "eval_timeout", "eval_max_retry_wait"):
            if not getattr(self, name) > 0:  # NaN is not a number of seconds either
                raise SettingsError(f"{PREFIX}{name.upper()} must be a positive number of seconds")
        for name in ("max_body_bytes", "max_prompt_chars", "max_opening_chars",
                     "max_event_bytes", "local_queue_size", "local_max_tokens", "local_context",
                     "stream_max_events", "stream_max_bytes", "store_max_bytes",
                     "eval_concurrency", "eval_max_concurrency", "eval_max_cells",
                     "eval_max_case_chars", "eval_max_body_bytes"):
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
        if self.upstream_transport not in UPSTREAM_TRANSPORTS:
            raise SettingsError(
                f"{PREFIX}UPSTREAM_TRANSPORT must be one of {', '.join(UPSTREAM_TRANSPORTS)}, "
                f"not {self.upstream_transport!r}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"{PREFIX}PORT must be from 1 to 65535, not {self.port}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.eval_concurrency > self.eval_max_concurrency:
            raise SettingsError(
                f"{PREFIX}EVAL_CONCURRENCY ({self.eval_concurrency}) must not exceed "
                f"{PREFIX}EVAL_MAX_CONCURRENCY ({self.eval_max_concurrency})"
            )
        # -- security (issue 6) ----------------------------------------------
        for name in ("rate_limit_per_minute", "max_concurrent_streams"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be 0 (off) or a positive integer")
        if self.api_keys is not None:
            read_api_keys(self.api_keys)
        if self.cors_origins is not None:
            cors_origin_list(self.cors_origins)
        # -- library (issue 20) ----------------------------------------------
        if self.database_url is not None and not self.database_url.startswith(DATABASE_SCHEMES):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL must be sqlite:///path/to/file.db, "
                "postgresql://user:password@host:5432/dbname, or off"
            )
        for name in ("record_queue", "import_max_bytes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be a positive integer")


DATABASE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://", "postgresql://", "postgres://",
                    "postgresql+asyncpg://", "postgresql+psycopg://")


def default_database_url(env: Mapping[str, str]) -> str | None:
    """The library's SQLite file under the user's data directory, from `env`; None without one.

    `$XDG_DATA_HOME/promptcast/promptcast.db`, else `~/.local/share/promptcast/promptcast.db`.
    """
    base = env.get("XDG_DATA_HOME") or ""
    if not base and env.get("HOME"):
        base = str(Path(env["HOME"]) / ".local" / "share")
    if not base:
        return None
    return "sqlite:///" + str(Path(base).expanduser().resolve() / "promptcast" / "promptcast.db")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key, and the name its owner goes by (None: unnamed)."""

    key: str
    name: str | None = None


# A key's name: what records show as its owner. Not `key-…`, the ids of unnamed keys.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def read_api_keys(spec: str) -> tuple[str, ...]:
    """The keys of `PROMPTCAST_API_KEYS`, without their names."""
    return tuple(dict.fromkeys(k.key for k in read_named_api_keys(spec)))


def read_named_api_keys(spec: str) -> tuple[ApiKey, ...]:
    """The keys of `PROMPTCAST_API_KEYS`: "k1,k2", or "@file" with one key a line ("#" comments).

    A key may carry its owner's name, `name:key`; several keys may share a name
    (one owner, keys rotated). Error messages name the variable, the file and
    the key's position, never the key itself.
    """
    var = PREFIX + "API_KEYS"
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"{var}: cannot read the key file {str(path)!r}: {type(exc).__name__}"
            ) from None
        raw = [line.strip() for line in text.splitlines()]
        keys = [line for line in raw if line and not line.startswith("#")]
        where = f"the key file {str(path)!r}"
    else:
        keys = [part.strip() for part in spec.split(",") if part.strip()]
        where = var
    if not keys:
        raise SettingsError(f"{var}: {where} holds no key")
    named: dict[str, ApiKey] = {}
    for number, entry in enumerate(keys, 1):
        name: str | None = None
        key = entry
        if ":" in entry:
            name, _, key = entry.partition(":")
            if (not name or len(name) > 64 or not set(name) <= _NAME_CHARS
                    or name.startswith("key-")):
                raise SettingsError(
                    f"{var}: key {number} in {where}: a name (before the colon) is 1 to 64 "
                    "letters, digits, '.', '_' or '-', and does not start with 'key-'"
                )
        # Visible ASCII, no comma: what fits in `Authorization: Bearer <key>` unchanged.
        if not key or not all("!" <= c <= "~" and c != "," for c in key):
            raise SettingsError(
                f"{var}: key {number} in {where} has a space, comma or non-ASCII character, "
                "or is empty"
            )
        if key in named and named[key].name != name:
            raise SettingsError(f"{var}: key {number} in {where} is listed twice, named apart")
        named.setdefault(key, ApiKey(key, name))
    return tuple(named.values())


def cors_origin_list(spec: str) -> list[str]:
    """The origins of `PROMPTCAST_CORS_ORIGINS`: `scheme://host[:port]` each, or `*`."""
    origins = [part.strip() for part in spec.split(",") if part.strip()]
    if not origins:
        raise SettingsError(f"{PREFIX}CORS_ORIGINS lists no origin")
    for origin in origins:
        if origin == "*":
            continue
        scheme, sep, rest = origin.partition("://")
        if (scheme not in ("http", "https") or not sep or not rest
                or any(c in rest for c in "/?#@ ")):
            raise SettingsError(
                f"{PREFIX}CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
                " (a scheme and a host, an optional port, no path or trailing slash)"
            )
    return origins


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
    if kind == "bool":
        flag = raw.strip().lower()
        if flag in ("1", "true", "yes"):
            return True
        if flag in ("0", "false", "no"):
            return False
        raise SettingsError(f"{var} must be one of 1/true/yes or 0/false/no, not {raw!r}")
    if name == "upstream_url":
        return raw.rstrip("/")
    if name == "upstream_transport":
        return raw.strip().lower()
    return raw
