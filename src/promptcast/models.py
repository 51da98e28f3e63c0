"""The model table: which names exist, which provider serves each, and whether it is usable."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptcast.errors import ModelNotFound, ModelUnavailable

DASHSCOPE = "https://dashscope.aliyuncs.com/compatible-mode/v1"
OPENAI = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One entry of the table; `api_key` is filled from the environment at start-up."""

    name: str
    provider: str
    upstream_model: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    description: str = ""
    max_tokens: int | None = None
    fallbacks: tuple[str, ...] = ()
    # What a million tokens cost, in whatever currency the operator prices in
    # (evaluation summaries add it up); None: not priced.
    input_price: float | None = None
    output_price: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What these tokens cost at this model's prices; None unless both prices are set."""
        if self.input_price is None or self.output_price is None:
            return None
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        if self.api_key_env and not self.api_key:
            return f"set {self.api_key_env}"
        return None


def _builtin() -> list[ModelSpec]:
    cloud = [
        ("qwen-max", DASHSCOPE, "DASHSCOPE_API_KEY", "Alibaba Qwen-Max via DashScope"),
        ("qwen-plus", DASHSCOPE, "DASHSCOPE_API_KEY", "Alibaba Qwen-Plus via DashScope"),
        ("qwen-turbo", DASHSCOPE, "DASHSCOPE_API_KEY", "Alibaba Qwen-Turbo via DashScope"),
        ("gpt-3.5-turbo", OPENAI, "OPENAI_API_KEY", "OpenAI GPT-3.5 Turbo"),
        ("gpt-4o-mini", OPENAI, "OPENAI_API_KEY", "OpenAI GPT-4o mini"),
    ]
    specs = [
        ModelSpec(name, "openai", name, base_url=url, api_key_env=env, description=desc)
        for name, url, env, desc in cloud
    ]
    specs.append(
        ModelSpec(
            "local",
            "llama",
            "SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct, embedded (llama.cpp, no key, no network)",
        )
    )
    return specs


def _spec_from_toml(name: str, entry: Mapping[str, Any], origin: str) -> ModelSpec:
    where = f"{origin}: [models.{name!r}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table of settings, not {entry!r}")
    allowed = {
        "provider", "base_url", "api_key_env", "model", "description", "max_tokens", "fallbacks",
        "input_price", "output_price",
    }
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    # Which names exist is the provider registry's to say (providers/registry.py).
    provider = entry.get("provider", "openai")
    if not isinstance(provider, str) or not provider:
        raise ValueError(f"{where}: provider must be a provider's name, not {provider!r}")
    base_url = entry.get("base_url")
    if provider == "openai" and not base_url:
        raise ValueError(f"{where}: an openai provider needs base_url")
    fallbacks = entry.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"{where}: fallbacks must be a list of model names")
    max_tokens = entry.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens <= 0):
        raise ValueError(f"{where}: max_tokens must be a positive integer")
    input_price = _price(entry, "input_price", where)
    output_price = _price(entry, "output_price", where)
    if (input_price is None) != (output_price is None):
        raise ValueError(f"{where}: give both input_price and output_price (per million "
                         "tokens), or neither")
    return ModelSpec(
        name=name,
        provider=provider,
        upstream_model=str(entry.get("model", name)),
        base_url=str(base_url).rstrip("/") if base_url else None,
        api_key_env=entry.get("api_key_env") or None,
        description=str(entry.get("description", "")),
        max_tokens=max_tokens,
        fallbacks=tuple(fallbacks),
        input_price=input_price,
        output_price=output_price,
    )


def _price(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    # bool is an int to Python; a price of `true` is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
        raise ValueError(f"{where}: {key} must be a number of at least 0 (the price of a "
                         f"million tokens), not {value!r}")
    return float(value)


def load_models_file(path: Path) -> list[ModelSpec]:
    """Read `[models."name"]` tables from a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read models file {path}: {exc}") from exc
    table = data.get("models", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: `models` must be a table of [models.\"name\"] entries")
    specs = [_spec_from_toml(name, entry, str(path)) for name, entry in table.items()]
    known = {spec.name for spec in specs} | {spec.name for spec in _builtin()}
    for spec in specs:
        for fallback in spec.fallbacks:
            if fallback not in known:
                raise ValueError(
                    f"{path}: [models.{spec.name!r}]: unknown fallback {fallback!r}; "
                    f"known models: {', '.join(sorted(known))}"
                )
    return specs


class ModelTable:
    """Built-in models, overridden and extended by a TOML file, with keys resolved."""

    def __init__(self, specs: list[ModelSpec], default: str | None = None) -> None:
        self._specs = {spec.name: spec for spec in specs}
        for spec in specs:
            for fallback in spec.fallbacks:
                if fallback not in self._specs:
                    raise ValueError(f"model {spec.name!r}: unknown fallback {fallback!r}")
        if default is not None and default not in self._specs:
            raise ValueError(
                f"PROMPTCAST_DEFAULT_MODEL={default!r} is not a configured model; "
                f"known: {', '.join(self._specs)}"
            )
        self.default = default or self._first_usable()

    @classmethod
    def build(
        cls,
        environ: Mapping[str, str],
        models_file: Path | None = None,
        default: str | None = None,
    ) -> ModelTable:
        """The built-in table plus `models_file`, with API keys read from `environ`."""
        specs = {spec.name: spec for spec in _builtin()}
        if models_file is not None:
            for spec in load_models_file(models_file):
                specs[spec.name] = spec
        resolved = [
            replace(s, api_key=environ.get(s.api_key_env) or None) if s.api_key_env else s
            for s in specs.values()
        ]
        return cls(resolved, default)

    def _first_usable(self) -> str:
        # A model the operator gave a key for is what they want by default;
        # the embedded model is the fallback that always works offline.
        for spec in self._specs.values():
            if spec.available and spec.provider != "llama":
                return spec.name
        if "local" in self._specs:
            return "local"
        return next(iter(self._specs))

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ModelSpec:
        """The spec for `name`; raise if unknown or unusable."""
        spec = self._specs.get(name)
        if spec is None:
            raise ModelNotFound(
                f"unknown model {name!r}; available: {', '.join(self.usable_names()) or 'none'}",
                field="model",
            )
        if not spec.available:
            raise ModelUnavailable(
                f"model {name!r} is not usable: {spec.unavailable_reason} "
                "in the server's environment",
                field="model",
            )
        return spec

    def get_spec(self, name: str) -> ModelSpec:
        """The spec for `name`, usable or not (KeyError if unknown)."""
        return self._specs[name]

    def usable_names(self) -> list[str]:
        return [s.name for s in self._specs.values() if s.available]

    def secrets(self) -> list[str]:
        """Every configured key, so error messages can be scrubbed of them."""
        return [s.api_key for s in self._specs.values() if s.api_key]
