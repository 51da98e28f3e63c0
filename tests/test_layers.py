"""The package's layers: imports point only down, so each folder can be read without those above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "promptcast"

# Top to bottom. A module may import from its own layer and any layer below.
LAYERS = [
    ("cli", "__main__"),
    ("server",),
    # The MCP server: the app mounts it at /mcp, and it uses the service, the relay and
    # ops' metrics and logs; what it needs of the server's runtime it names as a protocol.
    ("mcp_server",),
    ("ops",),
    ("relay",),
    ("evals",),  # evaluation runs: on the model service; the server streams them
    ("service",),
    # The library's database: beside the streams store, below the service (DESIGN.md).
    ("storage",),
    ("providers",),
    ("wire",),
    ("errors", "settings", "models", "proxies", "ids", "redact", "__init__"),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer_of(module: str) -> str:
    """The layer of a dotted module name inside the package: its first part after `promptcast`."""
    parts = module.split(".")
    assert parts[0] == "promptcast", module
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """Every promptcast module `path` imports, with its line (functions' own imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.split(".")[0] == "promptcast"]


def test_every_module_is_in_a_layer() -> None:
    unknown = {_layer_of(module) for module, _ in _modules()} - set(RANK)
    assert not unknown, f"add these to LAYERS in {__file__}: {sorted(unknown)}"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down(module: str, path: Path) -> None:
    rank = RANK[_layer_of(module)]
    upward = [
        f"line {line}: {target} ({_layer_of(target)})"
        for line, target in _imports(module, path)
        if RANK[_layer_of(target)] < rank
    ]
    assert not upward, f"{module} ({_layer_of(module)}) imports from a layer above it: {upward}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The test above must be able to fail: an import of the server from the relay is one.
    source = tmp_path / "relay.py"
    source.write_text("from promptcast.server.app import create_app\n")
    [(_line, target)] = _imports("promptcast.relay.bad", source)
    assert RANK[_layer_of(target)] < RANK[_layer_of("promptcast.relay.bad")]
