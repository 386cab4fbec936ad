"""The operator's command line, run as a separate process as an operator runs it."""

from __future__ import annotations

import os
import subprocess

from orchestrator.launch import python


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m orchestrator *args`, its output captured as text; `env` replaces the
    environment (the test's own when None)."""
    return subprocess.run(
        python("-m", "orchestrator", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else os.environ,
    )
