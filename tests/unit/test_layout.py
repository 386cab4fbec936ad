"""The layout's arrows run one way: the core imports nothing built on it; the
API layer, the webhooks and the workers use the core and not each other; only
the composition root (orchestrator.cli) imports them all. The emulator imports
nothing of ours; Redis key names are spelled in one place; the job functions RQ
stores by name exist."""

from __future__ import annotations

import ast
import importlib
import re
import zlib
from pathlib import Path

import pytest
from rq.serializers import DefaultSerializer

from orchestrator import jobs

ROOT = Path(__file__).resolve().parents[2]
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


# --- Redis key names are spelled in one place -----------------------------------------------

KEY_HOMES = {ROOT / "orchestrator" / "keys.py", ROOT / "orchestrator" / "lua" / "_keys.lua"}
KEY_SPELLINGS = (
    re.compile(r"orch:"),  # keys.PREFIX, spelled out
    re.compile(r"\bP\s*\.\.\s*['\"]"),  # a Lua key built from the prefix argument
)
PRODUCT_FILES = [
    p
    for package in ("orchestrator", "webhooks", "workers")
    for p in sorted((ROOT / package).rglob("*"))
    if p.is_file() and p.suffix in {".py", ".lua", ".html", ".js"} and p not in KEY_HOMES
]


def test_key_homes_exist() -> None:
    """The check below would pass vacuously if the key modules moved."""
    assert all(home.is_file() for home in KEY_HOMES)
    assert "orch:" in (ROOT / "orchestrator" / "keys.py").read_text()
    assert "P .. 'session:'" in (ROOT / "orchestrator" / "lua" / "_keys.lua").read_text()


@pytest.mark.parametrize("path", PRODUCT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_key_is_spelled_outside_keys_py_and_keys_lua(path: Path) -> None:
    """A key spelled twice drifts: orchestrator/keys.py and lua/_keys.lua name every one."""
    text = path.read_text()
    found = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for pattern in KEY_SPELLINGS
        for m in pattern.finditer(text)
    ]
    assert not found, f"{path.relative_to(ROOT)} spells a key: {found}"


# --- the emulator stands alone ------------------------------------------------------------

OURS = ("orchestrator", "webhooks", "workers", "bench", "tests")
EMULATOR = sorted((ROOT / "emulator").rglob("*.py"))


@pytest.mark.parametrize("path", EMULATOR, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_emulator_imports_nothing_of_ours(path: Path) -> None:
    """The emulator plays Twilio: it knows the service only through HTTP, as Twilio does,
    so it can test the service and not the service's own idea of Twilio."""
    ours = {name for name in _imports(path) if name.split(".")[0] in OURS}
    assert not ours, f"{path.relative_to(ROOT)} imports {sorted(ours)}"


def test_the_emulator_is_there() -> None:
    assert len(EMULATOR) > 3 and "emulator" in {_module(p).split(".")[0] for p in EMULATOR}


# --- every job function RQ will import exists ---------------------------------------------


def _stored_job_functions() -> set[str]:
    """The dotted paths RQ stores in Redis and imports when a worker runs the job: the job
    functions and failure callbacks, as the dial job and the control template hold them."""
    dial_key = jobs.dial_job("ses_x", "mem_x", (1,), 10)
    dial = dict(zip(dial_key[4][::2], dial_key[4][1::2], strict=True))
    control = jobs.control_template()
    return {
        jobs.DIAL_FUNCTION,
        jobs.FAILED_CALLBACK,
        jobs.CONTROL_FUNCTION,
        jobs.CONTROL_FAILED_CALLBACK,
        DefaultSerializer.loads(zlib.decompress(dial["data"]))[0],
        dial["failure_callback_name"],
        DefaultSerializer.loads(zlib.decompress(control["data"]))[0],
        control["failure_callback_name"],
    }


def test_every_stored_job_function_resolves_to_a_callable() -> None:
    """A renamed function would only fail in a worker, on the first job after a deploy."""
    names = _stored_job_functions()
    assert len(names) == 4  # the constants are exactly what the stored jobs name
    for name in sorted(names):
        module, _, attribute = name.rpartition(".")
        target = getattr(importlib.import_module(module), attribute, None)
        assert callable(target), f"{name} is not a callable"


# --- every test module stands alone ---------------------------------------------------------


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module a file imports, by its full dotted name (relative imports resolved
    against the tests package, `from a import b` counted as a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "tests" + (f".{base}" if base else "")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_test_imports_another_test_module_or_conftest() -> None:
    """What tests share lives in tests/support; a test module that imports another (or
    conftest) breaks when that one is moved or trimmed, and cannot run on its own."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for name in _imported_modules(ast.parse(path.read_text(), str(path))):
            last = name.rsplit(".", 1)[-1]
            if (
                name in ("conftest", "tests.conftest")
                or name.endswith(".conftest")
                or (name.startswith("tests.") and last.startswith("test_"))
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)
