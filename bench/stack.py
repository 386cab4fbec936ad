"""The processes under test, started the way the Procfile and tests/conftest.py start them.

Everything listens on loopback ports picked here; Redis is a private server in the bench's
own directory (`orchestrator.redis_server`), never a shared one. Each process writes its log
to the work directory, and `stop_all` ends exactly the processes started here, by pid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orchestrator import callback_urls, processes, redis_server

ACCOUNT_SID = "AC" + "be4c" * 8
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_ANSWER_SECONDS = 900.0  # the emulator's ring time of a callee that never answers
UVICORN_SETTINGS = ["--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5"]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        processes.stop(self.popen, grace=15)


@dataclass
class Stack:
    """Redis, the emulator, and whichever web/worker/B0/naive processes are running."""

    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    procs: dict[str, Proc] = field(default_factory=dict)
    helpers: list[int] = field(default_factory=list)  # the bench's own clients, forked by it
    redis: redis_server.RedisServer | None = None
    web_port: int = field(default_factory=redis_server.free_port)
    floor_port: int = field(default_factory=redis_server.free_port)
    naive_port: int = field(default_factory=redis_server.free_port)
    emulator_port: int = field(default_factory=redis_server.free_port)
    fake_twilio_port: int = field(default_factory=redis_server.free_port)
    twilio_api_url: str = ""

    @property
    def public_base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def env(self, twilio_api_url: str | None = None) -> dict[str, str]:
        assert self.redis is not None
        env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")}
        env.update(
            REDIS_URL=self.redis.url,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=self.token,
            TWILIO_API_BASE_URL=twilio_api_url or self.emulator_url,
            PUBLIC_BASE_URL=self.public_base_url,
            TWILIO_CPS="1000",
            PORT=str(self.web_port),
        )
        return env

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, *args],
                env=env or self.env(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench, which stops these in order
            )
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        return proc

    def pids(self) -> list[int]:
        """Every process of the bench: this one, Redis, and all started here with children."""
        out = [os.getpid()] + ([self.redis.process.pid] if self.redis else []) + self.helpers
        for proc in self.procs.values():
            out += tree(proc.pid)
        return out

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    # --- the parts

    def start_redis(self) -> None:
        self.redis = redis_server.start(self.workdir / "redis")

    def start_emulator(self) -> None:
        args = [
            "-m", "emulator", "--port", str(self.emulator_port),
            "--account-sid", ACCOUNT_SID, "--auth-token", self.token,
            "--voice-url", callback_urls.voice(self.public_base_url),
        ]  # fmt: skip
        help_text = _help(["-m", "emulator", "--help"])
        # The TCP front only exists to inject connection resets; Twilio has no such hop.
        if "--no-front" in help_text:
            args.append("--no-front")
        # A number ending 0002 rings until it is cancelled: the removal of a ringing member
        # is timed on it (bench/control.py); no other load dials such a number.
        if "--no-answer-seconds" in help_text:
            args += ["--no-answer-seconds", str(NO_ANSWER_SECONDS)]
        self._start("emulator", args)
        wait_http(f"{self.emulator_url}/_emulator/health", self.procs["emulator"])

    def start_web(self, processes: int, cli: bool = False) -> Proc:
        """`orchestrator web` for one process; uvicorn --workers for more (same settings), or
        with `cli`, `orchestrator web --workers` (its metrics then count every process)."""
        if cli:
            args = ["-m", "orchestrator", "web", "--host", "127.0.0.1"]
            args += ["--port", str(self.web_port), "--workers", str(processes)]
        elif processes == 1:
            args = [
                "-m",
                "orchestrator",
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.web_port),
            ]
        else:
            args = _uvicorn("orchestrator.cli.app:create_app", self.web_port, processes)
        proc = self._start("web", args)
        wait_http(f"{self.public_base_url}/health", proc)
        if processes > 1:
            self._wait_workers(proc, processes)
        return proc

    def _wait_workers(self, proc: Proc, processes: int, timeout: float = 30) -> None:
        """Until every worker has started its app (its lifespan holds a Redis connection),
        not only the first one to answer /health."""
        deadline = time.monotonic() + timeout
        while True:
            up = self.web_workers()
            if len(up) >= processes:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(up)} of {processes} web processes started")
            time.sleep(0.05)

    def web_workers(self) -> list[int]:
        """The processes of the web that serve requests: those connected to Redis (not
        uvicorn's supervisor or multiprocessing's resource tracker)."""
        assert self.redis is not None
        held = connections(tree(self.procs["web"].pid))
        return [pid for pid, c in held.items() if any(r == self.redis.port for _, r in c)]

    def start_floor(self, processes: int) -> Proc:
        proc = self._start("floor", _uvicorn("bench.floor:create_app", self.floor_port, processes))
        wait_http(f"http://127.0.0.1:{self.floor_port}/", proc)
        return proc

    def start_naive(self, twilio_api_url: str) -> Proc:
        env = self.env(twilio_api_url)
        proc = self._start("naive", _uvicorn("bench.naive:create_app", self.naive_port, 1), env)
        wait_http(f"http://127.0.0.1:{self.naive_port}/", proc)
        return proc

    def start_fake_twilio(self) -> str:
        args = _uvicorn("bench.naive:create_fake_twilio", self.fake_twilio_port, 1)
        proc = self._start("fake-twilio", args)
        url = f"http://127.0.0.1:{self.fake_twilio_port}"
        wait_http(url + "/", proc)
        return url

    def start_worker(self) -> Proc:
        return self._start("worker", ["-m", "orchestrator", "worker"])


def _uvicorn(factory: str, port: int, workers: int) -> list[str]:
    args = ["-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    return args + UVICORN_SETTINGS


def _help(args: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    return done.stdout + done.stderr


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    """Until `url` answers anything over HTTP; fails at once if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.log()}")
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.05)


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
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")
