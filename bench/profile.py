"""Reading a py-spy profile of the web process: where a request's CPU time goes.

py-spy samples the process from outside (no change to the code under test; `--nonblocking`
so it does not pause it). Its raw output is one line per distinct stack, `frame;frame;...
count`, each frame `function (file:line)`. We reduce that to three views for RESULTS.md:
samples by component (the innermost frame that belongs to a known library or to the
project), the hottest leaf functions, and the project functions with the most time inside.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

PROJECT = ("/orchestrator/", "/webhooks/", "/workers/")
# Process entry points: in every sample, so they say nothing.
ENTRY_POINTS = {
    "<module> (orchestrator/__main__.py)",
    "main (orchestrator/cli/__init__.py)",
    "cmd_web (orchestrator/cli/__init__.py)",
    "cmd_worker (orchestrator/cli/__init__.py)",
    "run (workers/worker.py)",
}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Innermost match wins; the first pattern that matches a frame names its component.
COMPONENTS = (
    ("epoll wait (selectors.py: idle, or the kernel's share of I/O)", ("/selectors.py",)),
    ("signature check (twilio RequestValidator)", ("/twilio/request_validator",)),
    ("RQ (job build in web; job handling in the worker)", ("/rq/",)),
    ("twilio REST client + requests/urllib3", ("/twilio/", "/requests/", "/urllib3/")),
    ("phone parsing (phonenumbers)", ("/phonenumbers/",)),
    ("redis-py client", ("/redis/",)),
    ("HTTP/1.1 (uvicorn + h11)", ("/h11/", "/uvicorn/")),
    ("Starlette", ("/starlette/",)),
    ("JSON / JSV rendering", ("/json/", "/orchestrator/jsv", "/orchestrator/api/responses")),
    ("logging", ("/logging/",)),
    ("orchestrator + webhooks + workers code", PROJECT),
    ("asyncio event loop and streams", ("/asyncio/",)),
)


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = FRAME.match(part.strip())
        if m:
            # py-spy shortens site-packages paths to `package/module.py`: anchor them.
            out.append((m["func"], "/" + m["file"].lstrip("/")))
    return out


def _component(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        where = f"{file}:{func}"
        for name, patterns in COMPONENTS:
            if any(p in where for p in patterns):
                return name
    return "other (stdlib, interpreter)"


def _short(func: str, file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{func} ({file.lstrip('/')})"


def summarise(raw: str, top: int = 10) -> dict[str, Any]:
    """{samples, components: [(name, share)], leaves: [...], project: [...]} from raw output."""
    total = 0
    components: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    project: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if not frames:
            continue
        total += n
        components[_component(frames)] += n
        leaves[_short(*frames[-1])] += n
        mine = {_short(f, p) for f, p in frames if any(x in p for x in PROJECT)}
        for name in mine - ENTRY_POINTS:
            project[name] += n
    if not total:
        return {"samples": 0, "components": [], "leaves": [], "project": []}

    def shares(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in counter.most_common(limit)]

    return {
        "samples": total,
        "components": shares(components),
        "leaves": shares(leaves, top),
        "project": shares(project, top),
    }
