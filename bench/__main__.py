"""`python -m bench`: run the whole benchmark and write bench/RESULTS.md.

Starts its own Redis (free loopback port, private directory), the Twilio emulator, the web
process (one, then two uvicorn workers), B0, the naive app and the worker as needed, then
`orchestrator web --workers 2` with 200 live event subscribers (bench/events.py), runs
every measurement `--runs` times, stops everything it started, and writes the table. Every
load is bounded by a request count and a time; nothing here touches a server it did not
start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from bench import stack
from bench.report import environment, render
from bench.suite import Options, Suite, find_py_spy


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (5)")
    p.add_argument("--quick", action="store_true", help="tiny numbers: a smoke run in ~2 min")
    p.add_argument("--output", type=Path, default=None, help="default bench/RESULTS.md")
    p.add_argument(
        "--rss-requests", type=int, default=None, help="requests for the RSS check (100000)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="measure again while other processes use >25%% of a core (default 2)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip py-spy even if installed")
    p.add_argument(
        "--only",
        choices=["control", "events", "agents", "queues"],
        help="only this section (control, agents, queues: with B0, in the same runs); "
        "RESULTS.md goes to the work directory unless --output is given",
    )
    p.add_argument(
        "--skip", choices=["control", "events", "agents", "queues"], help="leave this section out"
    )
    p.add_argument(
        "--before",
        metavar="REV",
        help="the ring queues' webhook and invite loads also against the web of git revision "
        "REV (checked out in the work directory), alternating with this one in each run",
    )
    a = p.parse_args(argv)
    if a.only and a.skip == a.only:
        p.error("--only and --skip name the same section")
    # A partial run goes to the work directory: it does not overwrite bench/RESULTS.md.
    output = a.output or (None if a.only else Path("bench/RESULTS.md"))
    o = Options(
        output=output,
        only=a.only,
        control=a.skip != "control",
        events=a.skip != "events",
        agents=a.skip != "agents",
        queues=a.skip != "queues",
        before=a.before,
    )
    if a.quick:
        o.runs, o.duration, o.rss_requests, o.memory_sessions, o.retries = 1, 1.0, 3000, 100, 0
    o.runs = a.runs if a.runs is not None else o.runs
    o.duration = a.duration if a.duration is not None else o.duration
    o.rss_requests = a.rss_requests if a.rss_requests is not None else o.rss_requests
    o.retries = a.retries if a.retries is not None else o.retries
    if o.runs < 1 or o.duration <= 0 or o.rss_requests < 100 or o.retries < 0:
        p.error("--runs >= 1, --duration > 0, --rss-requests >= 100, --retries >= 0")
    o.py_spy = None if a.no_profile else find_py_spy()
    return o


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    command = ("python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    workdir, log = stack.command("bench")
    output = options.output or workdir / "RESULTS.md"
    results = Suite(options, workdir, log).run()
    env = environment()
    raw = {
        "command": command,
        "environment": env,
        "options": dataclasses.asdict(options),
        "samples": {k: [dataclasses.asdict(x) for x in v] for k, v in results.samples.items()},
        "facts": results.facts,
    }
    # `python -m bench.report` renders RESULTS.md again from this.
    (workdir / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    text = render(results, env, command)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    log(f"wrote {output}; logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
