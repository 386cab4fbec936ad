"""The layout's arrows run one way: the core imports nothing built on it; the
API layer, the webhooks and the workers use the core and not each other; only
the composition root (orchestrator.cli) imports them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("orchestrator.api", "orchestrator.cli", "webhooks", "workers")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _layer(module: str) -> str | None:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    if module == "orchestrator" or module.startswith("orchestrator."):
        return "core"
    return None


# What each layer may import, besides itself and third-party code.
ALLOWED = {
    "core": {"core"},
    "orchestrator.api": {"core"},
    "webhooks": {"core"},
    "workers": {"core"},
    "orchestrator.cli": {"core", "orchestrator.api", "webhooks", "workers"},
}

SOURCES = [
    p
    for package in ("orchestrator", "webhooks", "workers")
    for p in sorted((ROOT / package).rglob("*.py"))
    if p.name != "__main__.py"  # `python -m orchestrator` is the composition root's door
]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    layer = _layer(_module(path))
    assert layer is not None
    wrong = {
        name
        for name in _imports(path)
        if (target := _layer(name)) is not None and target != layer and target not in ALLOWED[layer]
    }
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(wrong)}"


def test_every_layer_is_there() -> None:
    layers = {_layer(_module(p)) for p in SOURCES}
    assert layers == {"core", *LAYERS}
