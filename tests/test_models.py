"""The model table: built-in entries, keys, the default, the TOML file and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptcast.errors import ModelNotFound, ModelUnavailable
from promptcast.models import DASHSCOPE, OPENAI, ModelTable, load_models_file

BUILTIN = [
    # name, provider, base_url, key variable
    ("qwen-max", "openai", DASHSCOPE, "DASHSCOPE_API_KEY"),
    ("qwen-plus", "openai", DASHSCOPE, "DASHSCOPE_API_KEY"),
    ("qwen-turbo", "openai", DASHSCOPE, "DASHSCOPE_API_KEY"),
    ("gpt-3.5-turbo", "openai", OPENAI, "OPENAI_API_KEY"),
    ("gpt-4o-mini", "openai", OPENAI, "OPENAI_API_KEY"),
    ("local", "llama", None, None),
]


def test_builtin_urls() -> None:
    assert DASHSCOPE == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert OPENAI == "https://api.openai.com/v1"


def test_builtin_table_lists_exactly_the_builtin_models() -> None:
    assert ModelTable.build({}).names() == [row[0] for row in BUILTIN]


@pytest.mark.parametrize(("name", "provider", "base_url", "key_env"), BUILTIN)
def test_builtin_entry(name: str, provider: str, base_url: str | None, key_env: str | None) -> None:
    spec = next(s for s in ModelTable.build({}) if s.name == name)
    assert (spec.provider, spec.base_url, spec.api_key_env) == (provider, base_url, key_env)
    if provider == "openai":
        assert spec.upstream_model == name
    assert spec.description


@pytest.mark.parametrize(
    ("environ", "usable"),
    [
        ({}, ["local"]),
        ({"DASHSCOPE_API_KEY": "ds-key"}, ["qwen-max", "qwen-plus", "qwen-turbo", "local"]),
        ({"OPENAI_API_KEY": "oa-key"}, ["gpt-3.5-turbo", "gpt-4o-mini", "local"]),
        ({"DASHSCOPE_API_KEY": "", "OPENAI_API_KEY": ""}, ["local"]),  # empty is unset
        ({"DASHSCOPE_API_KEY": "a", "OPENAI_API_KEY": "b"}, [row[0] for row in BUILTIN]),
    ],
)
def test_availability_follows_the_keys(environ: dict[str, str], usable: list[str]) -> None:
    table = ModelTable.build(environ)
    assert table.usable_names() == usable
    for spec in table:
        assert spec.available is (spec.name in usable)


@pytest.mark.parametrize(("name", "_p", "_u", "key_env"), BUILTIN)
def test_unavailable_reason_names_the_variable(
    name: str, _p: str, _u: str, key_env: str | None
) -> None:
    spec = next(s for s in ModelTable.build({}) if s.name == name)
    if key_env is None:
        assert spec.unavailable_reason is None
    else:
        assert spec.unavailable_reason == f"set {key_env}"


def test_key_is_read_from_the_given_mapping_and_kept_out_of_repr() -> None:
    table = ModelTable.build({"OPENAI_API_KEY": "sk-secret-value-123"})
    spec = table.get("gpt-4o-mini")
    assert spec.api_key == "sk-secret-value-123"
    assert "sk-secret-value-123" not in repr(spec)


@pytest.mark.parametrize(
    ("environ", "default", "expected"),
    [
        ({}, None, "local"),
        ({"OPENAI_API_KEY": "k"}, None, "gpt-3.5-turbo"),
        ({"DASHSCOPE_API_KEY": "k"}, None, "qwen-max"),
        ({"DASHSCOPE_API_KEY": "k", "OPENAI_API_KEY": "k"}, None, "qwen-max"),
        ({"DASHSCOPE_API_KEY": "k"}, "local", "local"),
        ({}, "qwen-plus", "qwen-plus"),  # honoured even without its key
        ({"OPENAI_API_KEY": "k"}, "gpt-4o-mini", "gpt-4o-mini"),
    ],
)
def test_default_model(environ: dict[str, str], default: str | None, expected: str) -> None:
    assert ModelTable.build(environ, default=default).default == expected


def test_unknown_default_names_the_variable() -> None:
    with pytest.raises(ValueError, match="PROMPTCAST_DEFAULT_MODEL") as info:
        ModelTable.build({}, default="qwen-ultra")
    assert "qwen-ultra" in str(info.value)
    assert "local" in str(info.value)  # and lists what is configured


def write(tmp_path: Path, text: str, name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_adds_and_overrides_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[models."my-vllm"]
provider = "openai"
base_url = "http://10.0.0.5:8000/v1/"
model = "Qwen/Qwen2.5-7B-Instruct"
description = "our GPU box"
max_tokens = 1024

[models."qwen-max"]
provider = "openai"
base_url = "https://proxy.example.com/v1"
api_key_env = "PROXY_KEY"
model = "qwen-max-latest"
fallbacks = ["qwen-plus", "my-vllm"]
""",
    )
    table = ModelTable.build({"PROXY_KEY": "pk"}, path)
    # Built-in order kept, the new entry appended.
    assert table.names() == [row[0] for row in BUILTIN] + ["my-vllm"]
    vllm = table.get("my-vllm")
    assert vllm.provider == "openai"
    assert vllm.base_url == "http://10.0.0.5:8000/v1"  # trailing slash dropped
    assert vllm.upstream_model == "Qwen/Qwen2.5-7B-Instruct"
    assert (vllm.description, vllm.max_tokens, vllm.api_key_env) == ("our GPU box", 1024, None)
    assert vllm.available
    qwen = table.get("qwen-max")
    assert qwen.base_url == "https://proxy.example.com/v1"
    assert qwen.upstream_model == "qwen-max-latest"
    assert qwen.api_key == "pk"
    assert qwen.fallbacks == ("qwen-plus", "my-vllm")
    # The entry was replaced: the DashScope key no longer applies to it.
    assert not ModelTable.build({"DASHSCOPE_API_KEY": "ds"}, path).get("my-vllm").api_key_env
    assert "qwen-max" not in ModelTable.build({"DASHSCOPE_API_KEY": "ds"}, path).usable_names()


def test_file_model_defaults_to_the_key_and_provider_to_openai(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."llama3.1:8b"]\nbase_url = "http://127.0.0.1:11434/v1"\n')
    spec = ModelTable.build({}, path).get("llama3.1:8b")
    assert (spec.provider, spec.upstream_model) == ("openai", "llama3.1:8b")


def test_file_llama_entry_needs_no_base_url(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."tiny"]\nprovider = "llama"\n')
    spec = ModelTable.build({}, path).get("tiny")
    assert (spec.provider, spec.base_url) == ("llama", None)


def test_file_without_models_table_adds_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert ModelTable.build({}, path).names() == [row[0] for row in BUILTIN]


def test_file_model_can_become_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."mine"]\nbase_url = "http://127.0.0.1:9/v1"\n')
    assert ModelTable.build({}, path).default == "mine"  # keyless cloud entry is usable
    assert ModelTable.build({}, path, default="local").default == "local"


BAD_ENTRIES = [
    # (TOML, words the message must contain besides the file and the entry)
    ('[models."m"]\nbase_url = "http://h/v1"\napi_key = "sk-inline"\n', ["api_key", "allowed"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nurl = "x"\n', ["url", "allowed"]),
    # An unknown name is the provider registry's to refuse (test_registry.py).
    ('[models."m"]\nprovider = 3\nbase_url = "http://h/v1"\n', ["provider", "3"]),
    ('[models."m"]\nprovider = "openai"\n', ["base_url"]),
    ('[models."m"]\nprovider = "openai"\nbase_url = ""\n', ["base_url"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nfallbacks = "local"\n', ["fallbacks"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nfallbacks = [1, 2]\n', ["fallbacks"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nmax_tokens = 0\n', ["max_tokens"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nmax_tokens = "many"\n', ["max_tokens"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nmax_tokens = true\n', ["max_tokens"]),
    ('[models."m"]\nbase_url = "http://h/v1"\nfallbacks = ["nope"]\n', ["fallback", "nope"]),
    ('[models]\nm = "qwen-max"\n', []),
    ('[models]\nm = 1\n', []),
]


@pytest.mark.parametrize(("text", "words"), BAD_ENTRIES)
def test_bad_entry_is_a_value_error_naming_file_and_entry(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        ModelTable.build({}, path)
    message = str(info.value)
    assert str(path) in message
    assert "'m'" in message or '"m"' in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "text",
    [
        "models = 3\n",
        "[models\n",
        'models = "qwen"\n',
    ],
)
def test_malformed_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=r"models\.toml"):
        load_models_file(path)


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "models.toml"
    with pytest.raises(ValueError, match="cannot read models file") as info:
        ModelTable.build({}, missing)
    assert str(missing) in str(info.value)


def test_not_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_bytes(b'[models."m"]\ndescription = "\xff"\n')
    with pytest.raises(ValueError, match="cannot read models file") as info:
        ModelTable.build({}, path)
    assert str(path) in str(info.value)


def test_get_unknown_model_is_a_404_listing_usable_models() -> None:
    table = ModelTable.build({"OPENAI_API_KEY": "k"})
    with pytest.raises(ModelNotFound) as info:
        table.get("gpt-5")
    error = info.value
    assert error.http_status == 404
    assert error.field == "model"
    assert "'gpt-5'" in error.message
    assert "gpt-3.5-turbo, gpt-4o-mini, local" in error.message
    assert "qwen-max" not in error.message  # listed models are ones that can be used


def test_get_unknown_model_when_nothing_is_usable(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."paid"]\nbase_url = "http://h/v1"\napi_key_env = "K"\n')
    table = ModelTable([s for s in ModelTable.build({}, path) if s.name == "paid"])
    with pytest.raises(ModelNotFound, match="available: none"):
        table.get("other")


@pytest.mark.parametrize(
    ("name", "variable"),
    [("qwen-max", "DASHSCOPE_API_KEY"), ("qwen-turbo", "DASHSCOPE_API_KEY"),
     ("gpt-4o-mini", "OPENAI_API_KEY")],
)
def test_get_model_without_key_is_a_422_naming_the_variable(name: str, variable: str) -> None:
    with pytest.raises(ModelUnavailable) as info:
        ModelTable.build({}).get(name)
    error = info.value
    assert error.http_status == 422
    assert error.error_code == "model_unavailable"
    assert error.field == "model"
    assert f"'{name}'" in error.message
    assert variable in error.message


def test_get_returns_the_spec_with_its_key() -> None:
    spec = ModelTable.build({"DASHSCOPE_API_KEY": "ds-123"}).get("qwen-plus")
    assert (spec.name, spec.api_key) == ("qwen-plus", "ds-123")
    assert ModelTable.build({}).get("local").provider == "llama"


def test_contains_and_iteration() -> None:
    table = ModelTable.build({})
    assert "local" in table
    assert "nope" not in table
    assert [s.name for s in table] == table.names()


def test_secrets_are_every_configured_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."x"]\nbase_url = "http://h/v1"\napi_key_env = "X_KEY"\n')
    table = ModelTable.build(
        {"DASHSCOPE_API_KEY": "ds-secret", "X_KEY": "x-secret", "UNRELATED": "not-a-key"}, path
    )
    assert sorted(set(table.secrets())) == ["ds-secret", "x-secret"]
    assert ModelTable.build({}).secrets() == []


def test_prices_per_million_tokens_give_a_cost(tmp_path: Path) -> None:
    path = write(tmp_path, '[models."m"]\nbase_url = "http://127.0.0.1:1/v1"\n'
                           'input_price = 0.3\noutput_price = 2\n')
    [spec] = load_models_file(path)
    assert (spec.input_price, spec.output_price) == (0.3, 2.0)
    assert spec.cost(1_000_000, 500_000) == pytest.approx(0.3 + 1.0)
    assert ModelTable.build({}).get_spec("qwen-max").cost(10, 10) is None


@pytest.mark.parametrize(("entry", "message"), [
    ("input_price = 1\n", "give both input_price and output_price"),
    ('input_price = "1"\noutput_price = 1\n', "input_price must be a number of at least 0"),
    ("input_price = 1\noutput_price = -2\n", "output_price must be a number of at least 0"),
    ("input_price = true\noutput_price = 1\n", "input_price must be a number"),
    ("input_price = nan\noutput_price = 1\n", "input_price must be a number"),
])
def test_bad_prices_are_refused_clearly(tmp_path: Path, entry: str, message: str) -> None:
    path = write(tmp_path, f'[models."m"]\nbase_url = "http://127.0.0.1:1/v1"\n{entry}')
    with pytest.raises(ValueError, match=message):
        load_models_file(path)
