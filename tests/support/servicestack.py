"""The official ServiceStack client's view of the service: the Python DTOs exactly as
a client saves them from /types/python."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.support import net
from tests.support.stack import Stack


def official_dtos(stack: Stack, directory: Path, name: str = "orchestrator_dtos") -> ModuleType:
    """/types/python saved in `directory` as the module `name`, and imported."""
    response = net.get(f"{stack.base_url}/types/python")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    path = directory / f"{name}.py"
    path.write_text(response.text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
