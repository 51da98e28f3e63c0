"""Providers come from the registry: the built-ins, and packages installed for real that add
theirs through the `promptcast.providers` entry-point group (tests/fixtures/*_provider)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptcast.models import ModelSpec
from promptcast.providers import (
    ProviderContext,
    ProviderFactories,
    ProviderLoadError,
    ProviderRegistry,
)
from promptcast.providers.llama import LlamaProvider
from promptcast.providers.openai_compat import OpenAICompatProvider
from promptcast.redact import Redactor
from promptcast.settings import Settings, SettingsError
from promptcast.wire.http_client import HTTPClient

from .conftest import Process, free_port
from .test_cli import cli_env, rows, run

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROMPT = "You are a shop assistant"


def install(package: str, into: Path) -> Path:
    """`pip install` a fixture package into its own folder, offline, as a user would."""
    source = into / "src" / package
    shutil.copytree(FIXTURES / package, source)  # the build writes beside its sources
    target = into / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=120,
    )
    return target


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install("echo_provider", tmp_path_factory.mktemp("echo"))


def echo_env(site: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    models = tmp_path / "models.toml"
    models.write_text('[models."echo"]\nprovider = "echo"\ndescription = "says it back"\n',
                      encoding="utf-8")
    return cli_env(PYTHONPATH=str(site), PROMPTCAST_MODELS_FILE=str(models),
                   PROMPTCAST_DEFAULT_MODEL="echo", **extra)


# -- the built-ins -------------------------------------------------------------

def test_the_builtins_are_registered_by_name() -> None:
    factories = ProviderFactories.load(entry_points=[])
    assert factories.names() == ["llama", "openai"]
    settings = Settings.from_env({})
    context = ProviderContext(settings, HTTPClient(), Redactor())
    assert isinstance(factories.create(settings.models.get_spec("qwen-max"), context),
                      OpenAICompatProvider)
    assert isinstance(factories.create(settings.models.get_spec("local"), context),
                      LlamaProvider)


def test_a_model_entry_with_an_unknown_provider_is_refused_naming_the_known_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."m"]\nprovider = "anthropic"\nbase_url = "http://h/v1"\n',
                    encoding="utf-8")
    settings = Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path)})
    with pytest.raises(SettingsError) as info:
        ProviderRegistry(settings, HTTPClient(), Redactor(),
                         ProviderFactories.load(entry_points=[]))
    message = str(info.value)
    assert str(path) in message and "'m'" in message and "'anthropic'" in message
    assert "['llama', 'openai']" in message


def test_the_cli_refuses_an_unknown_provider_at_start(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."m"]\nprovider = "anthropic"\n', encoding="utf-8")
    result = run("models", env=cli_env(PROMPTCAST_MODELS_FILE=str(path)))
    assert result.returncode == 2
    assert "configuration:" in result.stderr and "'anthropic'" in result.stderr
    assert "['llama', 'openai']" in result.stderr


def test_entry_points_that_clash_or_do_not_load_are_refused_in_process() -> None:
    def entry(name: str, value: str) -> importlib.metadata.EntryPoint:
        return importlib.metadata.EntryPoint(name, value, "promptcast.providers")

    with pytest.raises(ProviderLoadError, match="'llama' is a built-in provider's name"):
        ProviderFactories.load([entry("llama", "json:loads")])
    with pytest.raises(ProviderLoadError, match="already registers a provider named 'x'"):
        ProviderFactories.load([entry("x", "json:loads"), entry("x", "json:dumps")])
    with pytest.raises(ProviderLoadError, match="failed to load: ModuleNotFoundError"):
        ProviderFactories.load([entry("x", "no_such_module_here:make")])
    with pytest.raises(ProviderLoadError, match="is not a factory"):
        ProviderFactories.load([entry("x", "json:__doc__")])
    factories = ProviderFactories.load([entry("mine", "json:loads")])
    assert factories.names() == ["llama", "mine", "openai"]


# -- a package installed for real ------------------------------------------------

def test_an_installed_package_adds_its_provider_to_the_models_list(
    echo_site: Path, tmp_path: Path,
) -> None:
    result = run("models", env=echo_env(echo_site, tmp_path))
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)["echo"] == ["echo", "ok (default)"]


def test_an_installed_provider_streams_a_rewrite_in_process(
    echo_site: Path, tmp_path: Path,
) -> None:
    result = run("optimize", PROMPT, "--model", "echo", env=echo_env(echo_site, tmp_path))
    assert result.returncode == 0, result.stderr
    # The echo says back the meta-prompt it was given, which holds the prompt.
    assert PROMPT in result.stdout


def test_an_installed_provider_streams_through_the_server(
    echo_site: Path, tmp_path: Path, processes: Callable[..., Process],
) -> None:
    env = echo_env(echo_site, tmp_path)
    server = processes([], {k: v for k, v in env.items() if k.startswith(("PROMPTCAST_",
                                                                           "PYTHONPATH"))},
                       tmp_path / "serve.log")
    models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert {"id": "echo", "owned_by": "echo"}.items() <= next(
        m for m in models["data"] if m["id"] == "echo").items()
    with httpx.stream("POST", f"{server.url}/optimize-stream", timeout=30,
                      json={"prompt": PROMPT, "model": "echo"}) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert '"content":"shop "' in body and body.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(("package", "words"), [
    ("broken_provider", ["'promptcast-broken'", "broken = 'broken_provider:make_provider'",
                         "ModuleNotFoundError", "a_dependency_that_is_not_installed"]),
    ("clashing_provider", ["'promptcast-clashing'", "'openai' is a built-in provider's name"]),
])
def test_a_package_that_cannot_be_used_stops_the_start_naming_it(
    tmp_path: Path, package: str, words: list[str],
) -> None:
    site = install(package, tmp_path)
    for command in (["models"], ["serve", "--port", str(free_port())]):
        result = run(*command, env=cli_env(PYTHONPATH=str(site)))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("promptcast: configuration: package ")
        for word in words:
            assert word in result.stderr


def test_a_spec_reaches_its_factory_with_the_shared_context() -> None:
    seen: list[tuple[ModelSpec, ProviderContext]] = []

    def factory(spec: ModelSpec, context: ProviderContext) -> OpenAICompatProvider:
        seen.append((spec, context))
        return OpenAICompatProvider(spec, context.transport, redactor=context.redactor,
                                    max_event_bytes=1024)

    settings = Settings.from_env({})
    transport = HTTPClient()
    registry = ProviderRegistry(settings, transport, Redactor(),
                                ProviderFactories({"openai": factory, "llama": factory}))
    spec = settings.models.get_spec("qwen-max")
    assert registry.get(spec) is registry.get(spec)  # one provider per model entry
    assert [(s.name, c.transport, c.settings) for s, c in seen] == [
        ("qwen-max", transport, settings)]
