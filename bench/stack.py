"""The processes under test, started with the project's launcher (orchestrator/launch.py) the
way the Procfile starts them, plus the bench's own baselines (B0, the naive app).

Everything listens on loopback ports picked here; Redis is a private server in the bench's
own directory (`orchestrator.redis_server`), never a shared one. Each process writes its log
to the work directory, and `stop_all` ends exactly the processes started here. The /proc
readings at the end are measurement: which process used how much CPU and memory, and which
one holds which connection.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Worker

from orchestrator import redis_server
from orchestrator.launch import Process, Service, free_port, python, wait_http, wait_until

ACCOUNT_SID = "AC" + "be4c" * 8
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_ANSWER_SECONDS = 900.0  # the emulator's ring time of a callee that never answers
UVICORN_SETTINGS = ["--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5"]
GRACE_SECONDS = 15.0


@dataclass
class Stack:
    """Redis, the emulator, and whichever web/worker/B0/naive processes are running."""

    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)  # more environment for them all
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    helpers: list[int] = field(default_factory=list)  # the bench's own clients, forked by it
    checkouts: list[Path] = field(default_factory=list)  # worktrees of `checkout`
    redis: redis_server.RedisServer | None = None
    service: Service | None = None
    floor_port: int = field(default_factory=free_port)
    naive_port: int = field(default_factory=free_port)

    @property
    def svc(self) -> Service:
        assert self.service is not None, "start_redis first"
        return self.service

    @property
    def procs(self) -> dict[str, Process]:
        return self.service.processes if self.service is not None else {}

    @property
    def web_port(self) -> int:
        return self.svc.port

    @property
    def public_base_url(self) -> str:
        return self.svc.base_url

    @property
    def emulator_url(self) -> str:
        return self.svc.emulator_url

    def pids(self) -> list[int]:
        """Every process of the bench: this one, Redis, and all started here with children."""
        out = [os.getpid()] + ([self.redis.process.pid] if self.redis else []) + self.helpers
        for proc in self.procs.values():
            out += tree(proc.pid)
        return out

    def stop(self, name: str) -> None:
        if self.service is not None:
            self.service.stop(name, GRACE_SECONDS)

    def stop_all(self) -> None:
        if self.service is not None:
            self.service.stop_all(GRACE_SECONDS)
            self.service.processes.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        for path in self.checkouts:
            git = ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)]
            subprocess.run(git, check=False)
        self.checkouts.clear()

    # --- the parts

    def start_redis(self, redis: redis_server.RedisServer | None = None) -> None:
        """A private Redis (or `redis`, started by the caller), and the service against it."""
        self.redis = redis or redis_server.start(self.workdir / "redis")
        self.service = Service(
            self.redis.url,
            self.workdir,
            account_sid=ACCOUNT_SID,
            auth_token=self.token,
            settings={"TWILIO_CPS": "1000", **self.settings},
            cwd=REPO,
        )

    def _start(
        self, name: str, args: list[str], url: str, env: dict[str, str] | None = None
    ) -> Process:
        proc = self.svc.spawn(name, python(*args), env)
        wait_http(url, [proc])
        return proc

    def start_emulator(self) -> None:
        # The TCP front only exists to inject connection resets; Twilio has no such hop. A
        # number ending 0002 rings until it is cancelled: the removal of a ringing member is
        # timed on it (bench/control.py); no other load dials such a number.
        proc = self.svc.start_emulator("--no-front", "--no-answer-seconds", str(NO_ANSWER_SECONDS))
        wait_http(f"{self.emulator_url}/_emulator/health", [proc])
        # What `Service.start` does too: `orchestrator twilio setup` against the emulator, so
        # every process started from here on has the API key and TwiML App that agents'
        # softphone tokens are signed with (GetAppConfig; bench/agents.py).
        self.svc.setup_twilio()

    def start_web(self, processes: int, cli: bool = False, code: Path | None = None) -> Process:
        """`orchestrator web` for one process; uvicorn --workers for more (same settings), or
        with `cli`, `orchestrator web --workers` (its metrics then count every process).
        `code`: another checkout's web (`checkout`), run from there."""
        s = self.svc
        if cli or processes == 1:
            args = ["-m", "orchestrator", "web", "--host", "127.0.0.1", "--port", str(s.port)]
            args += ["--workers", str(processes)] if cli else []
        else:
            args = _uvicorn("orchestrator.cli.app:create_app", s.port, processes)
        cwd, s.cwd = s.cwd, code or s.cwd  # `python -m` imports from its directory first
        try:
            proc = self._start("web", args, f"{s.base_url}/health")
        finally:
            s.cwd = cwd
        if processes > 1:
            # Every worker has started its app (its lifespan holds a Redis connection), not
            # only the first one to answer /health.
            wait_until(
                lambda: len(self.web_workers()) >= processes, 30, f"{processes} web processes"
            )
        return proc

    def web_workers(self) -> list[int]:
        """The processes of the web that serve requests: those connected to Redis (not
        uvicorn's supervisor or multiprocessing's resource tracker)."""
        assert self.redis is not None
        held = connections(tree(self.procs["web"].pid))
        return [pid for pid, c in held.items() if any(r == self.redis.port for _, r in c)]

    def checkout(self, revision: str) -> Path:
        """The project at git `revision`, as a worktree in the work directory (removed by
        `stop_all`): to run an earlier web beside this one."""
        path = self.workdir / f"code-{revision}"
        if not path.exists():
            git = ["git", "-C", str(REPO)]
            subprocess.run([*git, "worktree", "add", "--detach", str(path), revision], check=True)
            self.checkouts.append(path)
        return path

    def start_floor(self, processes: int) -> Process:
        args = _uvicorn("bench.floor:create_app", self.floor_port, processes)
        return self._start("floor", args, f"http://127.0.0.1:{self.floor_port}/")

    def start_naive(self) -> Process:
        args = _uvicorn("bench.naive:create_app", self.naive_port, 1)
        return self._start("naive", args, f"http://127.0.0.1:{self.naive_port}/")

    def start_worker(self) -> Process:
        """The worker, once it has registered with RQ (it takes jobs from then on)."""
        proc = self.svc.start_worker()
        with contextlib.closing(redis.Redis.from_url(self.svc.redis_url)) as r:

            def registered() -> bool:
                if not proc.alive():
                    raise RuntimeError(f"the worker exited:\n{proc.log()}")
                return Worker.count(connection=r) > 0

            wait_until(registered, 30, "the worker to register")
        return proc


def _uvicorn(factory: str, port: int, workers: int) -> list[str]:
    args = ["-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    return args + UVICORN_SETTINGS


# --- a command of the bench -------------------------------------------------------------------


def command(name: str) -> tuple[Path, Callable[[str], None]]:
    """A work directory of its own and a log with the seconds since the start. A SIGTERM
    unwinds like Ctrl-C, so the servers the command started are stopped, not orphaned."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return Path(tempfile.mkdtemp(prefix=f"orchestrator-{name}-")), log


# --- /proc readings ---------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn --workers runs its workers as children)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def connections(pids: list[int]) -> dict[int, list[tuple[int, int]]]:
    """Pid -> (local port, remote port) of each established TCP connection it holds: which
    process of `uvicorn --workers` accepted which client, which is connected to Redis."""
    inodes: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "01":  # ESTABLISHED
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
                inodes[int(fields[9])] = (local, remote)
    out: dict[int, list[tuple[int, int]]] = {}
    for pid in pids:
        held: list[tuple[int, int]] = []
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError, ValueError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                        held.append(inodes[int(link[8:-1])])
        out[pid] = held
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of `pid`; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
