"""Where providers come from: a provider name (a model entry's `provider = "..."`) → a factory.

The built-ins (`openai`, `llama`) register here the way a package of yours
does, through the entry-point group `promptcast.providers`:

    [project.entry-points."promptcast.providers"]
    echo = "echo_provider:make_provider"

A factory takes the model entry and a `ProviderContext` and returns a
`Provider` (base.py). Entry points are loaded once per process, at start-up;
a package that fails to load, or takes a name already taken, stops the
start with a message naming it.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from promptcast.models import ModelSpec
from promptcast.providers.base import Provider
from promptcast.providers.llama import LlamaProvider
from promptcast.providers.openai_compat import OpenAICompatProvider
from promptcast.redact import Redactor
from promptcast.settings import Settings, SettingsError
from promptcast.wire.transport import Transport

GROUP = "promptcast.providers"


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a factory may build its provider with; the transport and redactor are shared."""

    settings: Settings
    transport: Transport  # upstream HTTP (wire/transport.py): proxies and pooling included
    redactor: Redactor  # scrubs configured keys out of error messages


ProviderFactory = Callable[[ModelSpec, ProviderContext], Provider]


class ProviderLoadError(SettingsError):
    """An installed provider package could not be used; the message names it."""


def _openai(spec: ModelSpec, context: ProviderContext) -> Provider:
    return OpenAICompatProvider(spec, context.transport, redactor=context.redactor,
                                max_event_bytes=context.settings.max_event_bytes)


def _llama(spec: ModelSpec, context: ProviderContext) -> Provider:
    s = context.settings
    return LlamaProvider(spec, model_path=s.local_model_path, queue_size=s.local_queue_size,
                         max_tokens=spec.max_tokens or s.local_max_tokens,
                         context=s.local_context, threads=s.local_threads)


BUILTIN: Mapping[str, ProviderFactory] = {"openai": _openai, "llama": _llama}


class ProviderFactories:
    """The provider names a models file may use, each with its factory."""

    def __init__(self, factories: Mapping[str, ProviderFactory]) -> None:
        self._factories = dict(factories)

    @classmethod
    def load(cls, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
             ) -> ProviderFactories:
        """The built-ins, and each `promptcast.providers` entry point loaded now.

        Raises `ProviderLoadError` naming the package whose entry point fails to
        load, is not callable, or takes a name already taken.
        """
        found = importlib.metadata.entry_points(group=GROUP) if entry_points is None \
            else entry_points
        factories: dict[str, ProviderFactory] = dict(BUILTIN)
        owners: dict[str, str] = {}
        for entry in found:
            package = entry.dist.name if entry.dist is not None else "(unknown package)"
            where = f"package {package!r}, entry point {entry.name} = {entry.value!r} in {GROUP}"
            if entry.name in BUILTIN:
                raise ProviderLoadError(f"{where}: {entry.name!r} is a built-in provider's "
                                        "name; give the provider another name")
            if entry.name in owners:
                raise ProviderLoadError(f"{where}: the package {owners[entry.name]!r} "
                                        f"already registers a provider named {entry.name!r}")
            try:
                factory = entry.load()
            except Exception as exc:
                raise ProviderLoadError(
                    f"{where}: failed to load: {type(exc).__name__}: {exc}") from exc
            if not callable(factory):
                raise ProviderLoadError(f"{where}: {entry.value!r} is not a factory "
                                        "(a callable taking the model entry and a context)")
            factories[entry.name] = factory
            owners[entry.name] = package
        return cls(factories)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, spec: ModelSpec, context: ProviderContext) -> Provider:
        """A provider for `spec` (its name known: see `check`)."""
        return self._factories[spec.provider](spec, context)

    def check(self, settings: Settings) -> None:
        """Refuse a model entry whose provider nobody registered, naming the known ones."""
        for spec in settings.models:
            if spec.provider not in self._factories:
                origin = f"{settings.models_file}: " if settings.models_file else ""
                raise SettingsError(
                    f"{origin}[models.{spec.name!r}]: provider must be one of "
                    f"{self.names()}, not {spec.provider!r}"
                )


@functools.cache
def installed_providers() -> ProviderFactories:
    """`ProviderFactories.load()`, once per process: the CLI's check and the app share it."""
    return ProviderFactories.load()


class ProviderRegistry:
    """One provider instance per model entry, created on first use and closed together."""

    def __init__(self, settings: Settings, transport: Transport, redactor: Redactor,
                 factories: ProviderFactories | None = None) -> None:
        self._factories = installed_providers() if factories is None else factories
        self._factories.check(settings)
        self._context = ProviderContext(settings, transport, redactor)
        self._providers: dict[str, Provider] = {}

    def get(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec.name)
        if provider is None:
            provider = self._factories.create(spec, self._context)
            self._providers[spec.name] = provider
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
