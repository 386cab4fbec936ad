"""Starting and stopping the service's processes: the one launcher that
`orchestrator dev`, the test suite and the benchmarks all use.

Each part is a real process started as an operator starts it (`python -m
orchestrator web`, `... worker`, `python -m emulator`), in its own session so
that a terminal's Ctrl-C reaches only the launcher, which then stops them in
order (web and workers before the Redis they need to shut down cleanly).
Stopping one signals its whole process group, so children (RQ's scheduler,
uvicorn's `--workers`) go with it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import httpx

from orchestrator import callback_urls

T = TypeVar("T")

# A Twilio client pointed at the emulator must not rewrite its host name for a region.
_TWILIO_HOST_REWRITES = ("TWILIO_REGION", "TWILIO_EDGE")


def _ephemeral_ports() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback TCP port nobody uses now, for a process about to listen on it.

    Taken below the kernel's ephemeral range when there is room: a port from that
    range can be handed to any outgoing connection (to Redis, say) between the
    moment we pick it and the moment the child binds it, and the child then fails
    with "address already in use". Below it, only a listener could take it.
    """
    low, _ = _ephemeral_ports()
    if low > 11_000:
        for _ in range(100):
            port = random.randint(10_000, low - 1)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on `port` (what `orchestrator dev` checks first)."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], T], timeout: float = 10, what: str = "condition", interval: float = 0.02
) -> T:
    """Poll `check` until it returns something truthy, and return that; after `timeout`
    seconds raise TimeoutError naming `what`. The one wait loop of the project."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """One child process, in its own process group, its output in `log_path` (or
    inherited when there is none, as `orchestrator dev` shows its children's lines)."""

    name: str
    args: list[str]
    env: Mapping[str, str] | None = None
    log_path: Path | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log: IO[bytes] | None = self.log_path.open("ab") if self.log_path else None
        try:
            self.popen = subprocess.Popen(
                self.args,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
            )
        finally:
            if log:
                log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def log(self, tail: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def signal(self, signum: int) -> None:
        """Send `signum` to the process and its children; nothing if it has exited."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash or an OOM kill would."""
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait()

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL what has not exited within `grace` seconds; reaped."""
        stop_all([self], grace)


def stop_all(processes: Iterable[Process], grace: float = 10) -> None:
    """Stop them together: all are asked at once, and one deadline covers them all, so
    stopping a set never takes more than `grace` seconds however many there are."""
    processes = [p for p in processes if p.alive()]
    for p in processes:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        assert p.popen is not None
        try:
            p.popen.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def wait_http(url: str, processes: Iterable[Process] = (), timeout: float = 30) -> None:
    """Until `url` answers anything over HTTP; fails at once, with its log, when one of
    `processes` exits meanwhile. One client for all the polls: httpx builds a TLS
    context, loading the CA store, for every client it makes."""
    watched = list(processes)
    client = httpx.Client(timeout=1, trust_env=False)

    def answers() -> bool:
        for p in watched:
            if not p.alive():
                raise RuntimeError(
                    f"{p.name} exited with {p.returncode} during start-up\n{p.log()}"
                )
        try:
            client.get(url)
            return True
        except httpx.TransportError:
            return False

    with client:
        wait_until(answers, timeout, f"{url} to answer", interval=0.05)


def python(*args: str) -> list[str]:
    """A command line of this interpreter: the children run the same installation."""
    return [sys.executable, *args]


@dataclass
class Service:
    """The service on one machine: the Twilio emulator, a web process and workers,
    started as the Procfile starts them, against the Redis at `redis_url`."""

    redis_url: str
    workdir: Path | None = None
    account_sid: str = "AC" + "de70" * 8
    auth_token: str = field(default_factory=lambda: os.urandom(16).hex())
    port: int = field(default_factory=free_port)
    emulator_port: int = field(default_factory=free_port)
    settings: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    processes: dict[str, Process] = field(default_factory=dict)
    # Run `orchestrator twilio setup` against the emulator at start, so agents' softphones
    # are configured; False leaves the three settings unset (GetAppConfig: NotConfigured).
    softphones: bool = True
    # What that setup printed: TWILIO_API_KEY_SID, ..._SECRET, TWILIO_TWIML_APP_SID.
    twilio_settings: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of the service gets: the operator's own,
        then the service's settings (with what the Twilio setup made), then `settings`,
        which win."""
        env = {k: v for k, v in os.environ.items() if k not in _TWILIO_HOST_REWRITES}
        env.update(
            REDIS_URL=self.redis_url,
            TWILIO_ACCOUNT_SID=self.account_sid,
            TWILIO_AUTH_TOKEN=self.auth_token,
            TWILIO_API_BASE_URL=self.emulator_url,
            PUBLIC_BASE_URL=self.base_url,
            PORT=str(self.port),
        )
        if self.workdir is not None:
            # The web process and the workers of one service add up their metrics here.
            env["METRICS_DIR"] = str(self.workdir / "metrics")
        env.update(self.twilio_settings)
        env.update(self.settings)
        return env

    def spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Process:
        """Start `args` as the process `name`, logging to the work directory if there is one."""
        log = self.workdir / f"{name}.log" if self.workdir is not None else None
        process = Process(name, args, env or self.env, log, self.cwd).start()
        self.processes[name] = process
        return process

    def start_emulator(self, *args: str) -> Process:
        return self.spawn(
            "emulator",
            python(
                "-m", "emulator", "--port", str(self.emulator_port),
                "--account-sid", self.account_sid, "--auth-token", self.auth_token,
                "--voice-url", callback_urls.voice(self.base_url), *args,
            ),
        )  # fmt: skip

    def start_web(self, *args: str, name: str = "web") -> Process:
        return self.spawn(name, python("-m", "orchestrator", "web", "--host", "127.0.0.1", *args))

    def start_worker(self, name: str = "worker") -> Process:
        return self.spawn(name, python("-m", "orchestrator", "worker"))

    def start(
        self,
        workers: int = 1,
        emulator_args: tuple[str, ...] = (),
        web_args: tuple[str, ...] = (),
        timeout: float = 30,
    ) -> Service:
        """Emulator, the Twilio setup (unless `softphones` is False), web and `workers`
        workers; returns once the emulator and the web process answer, and stops them all
        if either never does or the setup fails."""
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            emulator = self.start_emulator(*emulator_args)
            if self.softphones:
                wait_http(f"{self.emulator_url}/_emulator/health", [emulator], timeout)
                self.setup_twilio()
            self.start_web(*web_args)
            for n in range(workers):
                self.start_worker("worker" if n == 0 else f"worker{n}")
            self.wait_ready(timeout)
        except BaseException:
            self.stop_all()
            raise
        return self

    def setup_twilio(self) -> dict[str, str]:
        """`orchestrator twilio setup --new-key`, in this process, against the emulator:
        the settings it prints become the web's and the workers' (`twilio_settings`).
        The emulator is new: no key could be kept, and it has no phone numbers to point
        (so Redis is not asked, and may come up later). Its lines go to the work
        directory's twilio-setup.log, or to stderr when there is none."""
        from orchestrator import twilio_rest, twilio_setup  # twilio's client: only if asked

        env = self.env
        log = self.workdir / "twilio-setup.log" if self.workdir is not None else None

        def say(line: str) -> None:
            if log is None:
                print(f"twilio setup: {line}", file=sys.stderr, flush=True)
            else:
                with log.open("a") as f:
                    f.write(line + "\n")

        client = twilio_rest.client(self.account_sid, self.auth_token, self.emulator_url)
        made = twilio_setup.setup(client, (), env["PUBLIC_BASE_URL"], new_key=True, say=say)
        self.twilio_settings = made.env()
        return self.twilio_settings

    def wait_ready(self, timeout: float = 30) -> None:
        every = list(self.processes.values())
        wait_http(f"{self.emulator_url}/_emulator/health", every, timeout)
        wait_http(f"{self.base_url}/health", every, timeout)

    def stop(self, name: str, grace: float = 10) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop(grace)

    def stop_all(self, grace: float = 10) -> None:
        stop_all(self.processes.values(), grace)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in self.processes.values())
