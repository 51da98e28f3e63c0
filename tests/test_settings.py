"""Settings: every PROMPTCAST_* variable, bad values, CLI overrides, which environment is read."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from promptcast.settings import PREFIX, Settings, SettingsError

# `models` and `proxies` come from other variables (test_models.py, and below).
SETTING_FIELDS = [f for f in fields(Settings) if f.name not in ("models", "proxies")]


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.upstream_url is None
    assert settings.models_file is None
    assert settings.first_token_timeout == 30
    assert settings.idle_timeout == 30
    assert settings.total_timeout == 120
    assert settings.heartbeat_interval == 15
    assert settings.max_body_bytes == 64 * 1024
    assert settings.models.default == "local"


@pytest.mark.parametrize(
    ("variable", "raw", "name", "expected"),
    [
        ("PROMPTCAST_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("PROMPTCAST_PORT", "9001", "port", 9001),
        ("PROMPTCAST_FIRST_TOKEN_TIMEOUT", "2.5", "first_token_timeout", 2.5),
        ("PROMPTCAST_IDLE_TIMEOUT", "7", "idle_timeout", 7.0),
        ("PROMPTCAST_TOTAL_TIMEOUT", "1e3", "total_timeout", 1000.0),
        ("PROMPTCAST_HEARTBEAT_INTERVAL", "0.25", "heartbeat_interval", 0.25),
        ("PROMPTCAST_CONNECT_TIMEOUT", "3", "connect_timeout", 3.0),
        ("PROMPTCAST_MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
        ("PROMPTCAST_MAX_PROMPT_CHARS", "50", "max_prompt_chars", 50),
        ("PROMPTCAST_MAX_OPENING_CHARS", "60", "max_opening_chars", 60),
        ("PROMPTCAST_MAX_EVENT_BYTES", "4096", "max_event_bytes", 4096),
        ("PROMPTCAST_LOCAL_QUEUE_SIZE", "2", "local_queue_size", 2),
        ("PROMPTCAST_LOCAL_MAX_TOKENS", "64", "local_max_tokens", 64),
        ("PROMPTCAST_LOCAL_THREADS", "4", "local_threads", 4),
        ("PROMPTCAST_LOCAL_CONTEXT", "2048", "local_context", 2048),
        ("PROMPTCAST_LOCAL_MODEL_PATH", "/models/x.gguf", "local_model_path",
         Path("/models/x.gguf")),
        ("PROMPTCAST_UPSTREAM_URL", "http://10.0.0.2:8001", "upstream_url",
         "http://10.0.0.2:8001"),
        ("PROMPTCAST_UPSTREAM_URL", "https://svc.example.com/base/", "upstream_url",
         "https://svc.example.com/base"),
        ("PROMPTCAST_UPSTREAM_URL", "http://h:1///", "upstream_url", "http://h:1"),
        ("PROMPTCAST_DEFAULT_MODEL", "qwen-turbo", "default_model", "qwen-turbo"),
        ("PROMPTCAST_LOG_LEVEL", "debug", "log_level", "debug"),
    ],
)
def test_variable_is_parsed(variable: str, raw: str, name: str, expected: Any) -> None:
    settings = Settings.from_env({variable: raw})
    value = getattr(settings, name)
    assert value == expected
    assert type(value) is type(expected)


def _valid(kind: str, name: str, tmp_path: Path) -> tuple[str, Any]:
    """A valid raw value for a field of type `kind`, different from its default."""
    if name == "models_file":
        path = tmp_path / "models.toml"
        path.write_text("", encoding="utf-8")
        return str(path), path
    if kind.startswith("float"):
        return "4.5", 4.5
    if kind.startswith("int"):
        return "7", 7
    if kind.startswith("Path"):
        return "/srv/somewhere", Path("/srv/somewhere")
    if name == "database_url":
        return "sqlite:////srv/library.db", "sqlite:////srv/library.db"
    if name == "record_runs":
        return "false", False
    if name.endswith("_url"):
        scheme = "redis" if "redis" in name else "http"
        return f"{scheme}://127.0.0.1:1234", f"{scheme}://127.0.0.1:1234"
    if name in ("default_model", "eval_judge"):
        return "gpt-4o-mini", "gpt-4o-mini"
    if name == "log_level":
        return "warning", "warning"
    if kind == "bool":
        return "true", True
    if name == "cors_origins":
        return "https://app.example", "https://app.example"
    if name == "upstream_transport":
        return "httpx", "httpx"
    return "some-value", "some-value"


@pytest.mark.parametrize("field", SETTING_FIELDS, ids=lambda f: f.name)
def test_every_field_is_read_from_its_variable(field: Any, tmp_path: Path) -> None:
    raw, expected = _valid(str(field.type), field.name, tmp_path)
    assert expected != field.default
    settings = Settings.from_env({PREFIX + field.name.upper(): raw})
    assert getattr(settings, field.name) == expected


@pytest.mark.parametrize("field", SETTING_FIELDS, ids=lambda f: f.name)
def test_empty_variable_means_the_default(field: Any) -> None:
    settings = Settings.from_env({PREFIX + field.name.upper(): ""})
    assert getattr(settings, field.name) == field.default


NUMBER_FIELDS = [f.name for f in SETTING_FIELDS if str(f.type) in ("float", "int")]
SECONDS_FIELDS = [f.name for f in SETTING_FIELDS if str(f.type) == "float"]
POSITIVE_INT_FIELDS = [
    "max_body_bytes", "max_prompt_chars", "max_opening_chars", "max_event_bytes",
    "local_queue_size", "local_max_tokens", "local_context",
]


@pytest.mark.parametrize("name", NUMBER_FIELDS)
@pytest.mark.parametrize("raw", ["abc", "1,5", "ten seconds", "0x10"])
def test_not_a_number_names_the_variable(name: str, raw: str) -> None:
    variable = PREFIX + name.upper()
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: raw})
    assert variable in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("name", [f.name for f in SETTING_FIELDS if str(f.type) == "int"])
def test_fraction_for_an_integer_names_the_variable(name: str) -> None:
    variable = PREFIX + name.upper()
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: "1.5"})


@pytest.mark.parametrize("name", SECONDS_FIELDS)
@pytest.mark.parametrize("raw", ["0", "-1", "-0.001"])
def test_non_positive_seconds_are_refused(name: str, raw: str) -> None:
    variable = PREFIX + name.upper()
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    "name", ["first_token_timeout", "idle_timeout", "total_timeout", "heartbeat_interval"]
)
def test_nan_seconds_are_refused(name: str) -> None:
    # NaN compares false with everything: it would silently switch a limit off.
    variable = PREFIX + name.upper()
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: "nan"})


@pytest.mark.parametrize("name", POSITIVE_INT_FIELDS)
@pytest.mark.parametrize("raw", ["0", "-5"])
def test_non_positive_sizes_are_refused(name: str, raw: str) -> None:
    variable = PREFIX + name.upper()
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PROMPTCAST_UPSTREAM_URL", "localhost:8001"),
        ("PROMPTCAST_UPSTREAM_URL", "ftp://example.com"),
        ("PROMPTCAST_PORT", "70000"),
        ("PROMPTCAST_PORT", "-1"),
        ("PROMPTCAST_LOG_LEVEL", "verbose"),
        ("PROMPTCAST_DEFAULT_MODEL", "qwen-ultra"),
    ],
)
def test_unusable_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_models_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."box"]\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8")
    settings = Settings.from_env(
        {"PROMPTCAST_MODELS_FILE": str(path), "PROMPTCAST_DEFAULT_MODEL": "box"}
    )
    assert settings.models_file == path
    assert settings.models.default == "box"
    assert settings.models.get("box").base_url == "http://127.0.0.1:9/v1"


def test_bad_models_file_is_a_settings_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models."box"]\nprovider = "openai"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="base_url") as info:
        Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path)})
    assert str(path) in str(info.value)


def test_missing_models_file_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PROMPTCAST_MODELS_FILE": str(path)})
    assert str(path) in str(info.value)


def test_api_keys_come_from_the_same_mapping() -> None:
    settings = Settings.from_env({"DASHSCOPE_API_KEY": "ds-key"})
    assert settings.models.default == "qwen-max"
    assert settings.models.get("qwen-max").api_key == "ds-key"


@pytest.mark.parametrize(
    ("environ", "overrides", "name", "expected"),
    [
        ({"PROMPTCAST_PORT": "9000"}, {"port": 9100}, "port", 9100),
        ({"PROMPTCAST_PORT": "9000"}, {"port": None}, "port", 9000),  # flag not given
        ({"PROMPTCAST_HOST": "0.0.0.0"}, {"host": "::1"}, "host", "::1"),
        ({"PROMPTCAST_TOTAL_TIMEOUT": "50"}, {"total_timeout": 5.0}, "total_timeout", 5.0),
        ({"PROMPTCAST_IDLE_TIMEOUT": "50"}, {"idle_timeout": 2.0}, "idle_timeout", 2.0),
        ({"PROMPTCAST_FIRST_TOKEN_TIMEOUT": "50"}, {"first_token_timeout": 1.0},
         "first_token_timeout", 1.0),
        ({"PROMPTCAST_HEARTBEAT_INTERVAL": "50"}, {"heartbeat_interval": 0.5},
         "heartbeat_interval", 0.5),
        ({"PROMPTCAST_UPSTREAM_URL": "http://a:1"}, {"upstream_url": "http://b:2"},
         "upstream_url", "http://b:2"),
        ({"PROMPTCAST_LOG_LEVEL": "debug"}, {"log_level": "warning"}, "log_level", "warning"),
        ({}, {"total_timeout": 9.0}, "total_timeout", 9.0),
    ],
)
def test_overrides_beat_the_environment(
    environ: dict[str, str], overrides: dict[str, Any], name: str, expected: Any
) -> None:
    assert getattr(Settings.from_env(environ, **overrides), name) == expected


def test_override_models_file_beats_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text('[models."from-env"]\nbase_url = "http://h/v1"\n', encoding="utf-8")
    flag_file = tmp_path / "flag.toml"
    flag_file.write_text('[models."from-flag"]\nbase_url = "http://h/v1"\n', encoding="utf-8")
    settings = Settings.from_env({"PROMPTCAST_MODELS_FILE": str(env_file)}, models_file=flag_file)
    assert "from-flag" in settings.models
    assert "from-env" not in settings.models


@pytest.mark.parametrize(
    ("name", "value"),
    [("total_timeout", 0.0), ("idle_timeout", -1.0), ("heartbeat_interval", 0.0),
     ("first_token_timeout", -0.5)],
)
def test_non_positive_override_is_refused(name: str, value: float) -> None:
    with pytest.raises(SettingsError, match=PREFIX + name.upper()):
        Settings.from_env({}, **{name: value})


def test_explicit_mapping_means_the_process_environment_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROMPTCAST_PORT", "9999")
    monkeypatch.setenv("PROMPTCAST_TOTAL_TIMEOUT", "not a number")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-process-environment")
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.total_timeout == 120
    assert "gpt-4o-mini" not in settings.models.usable_names()
    assert settings.models.secrets() == []


def test_process_environment_is_read_without_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROMPTCAST_PORT", "9999")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-process-environment")
    settings = Settings.from_env()
    assert settings.port == 9999
    assert "gpt-4o-mini" in settings.models.usable_names()


def test_unprefixed_variables_are_ignored() -> None:
    settings = Settings.from_env({"PORT": "1", "HOST": "0.0.0.0", "TOTAL_TIMEOUT": "1"})
    assert (settings.port, settings.host, settings.total_timeout) == (8000, "127.0.0.1", 120)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


# -- the upstream transport and the proxy variables -----------------------------

@pytest.mark.parametrize(("raw", "expected"), [("", "auto"), ("auto", "auto"),
                                               ("builtin", "builtin"), (" HTTPX ", "httpx")])
def test_the_upstream_transport_is_read(raw: str, expected: str) -> None:
    assert Settings.from_env({"PROMPTCAST_UPSTREAM_TRANSPORT": raw}).upstream_transport == expected


def test_an_unknown_upstream_transport_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PROMPTCAST_UPSTREAM_TRANSPORT": "curl"})
    assert str(info.value) == ("PROMPTCAST_UPSTREAM_TRANSPORT must be one of auto, builtin, "
                               "httpx, not 'curl'")


def test_the_proxy_variables_are_read_from_the_mapping_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://from-the-process:1")
    settings = Settings.from_env({"https_proxy": "http://p.corp:3128", "NO_PROXY": "in.corp"})
    assert settings.proxies.for_url("https://api.example/v1") == "http://p.corp:3128"
    assert settings.proxies.for_url("https://x.in.corp/v1") is None
    assert not Settings.from_env({}).proxies


def test_a_bad_proxy_variable_is_a_settings_error_naming_it() -> None:
    with pytest.raises(SettingsError, match=r"^HTTPS_PROXY: .*socks5://"):
        Settings.from_env({"HTTPS_PROXY": "socks5://127.0.0.1:1080"})


def test_proxy_passwords_are_among_the_secrets() -> None:
    settings = Settings.from_env({"HTTP_PROXY": "http://me:hunter22@p.corp:3128",
                                  "OPENAI_API_KEY": "sk-abcdefgh12345678"})
    assert set(settings.secrets()) == {"hunter22", "sk-abcdefgh12345678"}
def test_evaluation_settings_are_checked_against_each_other_and_the_models() -> None:
    with pytest.raises(SettingsError, match="PROMPTCAST_EVAL_JUDGE='nope' is not a configured"):
        Settings.from_env({"PROMPTCAST_EVAL_JUDGE": "nope"})
    with pytest.raises(SettingsError, match=r"PROMPTCAST_EVAL_CONCURRENCY .* must not exceed"):
        Settings.from_env({"PROMPTCAST_EVAL_CONCURRENCY": "40"})
    with pytest.raises(SettingsError, match="PROMPTCAST_EVAL_MAX_CELLS must be a positive"):
        Settings.from_env({"PROMPTCAST_EVAL_MAX_CELLS": "0"})
