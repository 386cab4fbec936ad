"""The real parts the tests run against: a Redis server the suite starts on a
free port, the Twilio emulator, and the web and worker processes started the
way the Procfile starts them. Nothing here talks to a server it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import phonenumbers
import pytest
import redis

from orchestrator import callback_urls, provision, redis_client, redis_server

T = TypeVar("T")
ACCOUNT_SID = "AC" + "7e57" * 8


def wait_for(check: Callable[[], T], timeout: float = 10, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def random_number(avoid_outcomes: bool = True) -> str:
    """A valid, unused-looking US number; never one of the emulator's special endings."""
    while True:
        candidate = f"+1415{random.randint(2000000, 9999999)}"
        if avoid_outcomes and candidate[-4:] in {"0001", "0002", "0003", "0004"}:
            continue
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        # Its own process group: stop() and kill() reach the children too (RQ's scheduler).
        self.popen = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash or an OOM kill would."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Stack:
    """One running service: web + worker + emulator + Redis."""

    redis_url: str
    base_url: str
    emulator_url: str
    auth_token: str
    env: dict[str, str]
    workdir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def redis(self) -> redis.Redis:
        return redis_client.connect_sync(self.redis_url, decode_responses=True)

    def session_log(self, sid: str) -> list[dict[str, str]]:
        """A session's log entries, oldest first, as Redis holds them."""
        return [json.loads(e) for e in self.redis.lrange(f"orch:session:{sid}:log", 0, -1)]

    def start(self, name: str, *args: str) -> Process:
        process = Process(
            name, [sys.executable, *args], self.env, self.workdir / f"{name}.log"
        ).start()
        self.processes[name] = process
        return process

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in self.processes.values())

    # --- helpers the tests share

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def incoming_call(self, from_: str, to: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.emulator_url}/_emulator/incoming", data={"From": from_, "To": to}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    def emulator(self, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.emulator_url}/_emulator/{path}", timeout=10, **kwargs)

    def creates(self, label: str) -> int:
        return self.emulator("creates").json()["byLabel"].get(label, 0)


def _wait_http(url: str, processes: list[Process], timeout: float = 20) -> None:
    def up() -> bool:
        for p in processes:
            assert p.popen and p.popen.poll() is None, f"{p.name} exited:\n{p.log()}"
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.TransportError:
            return False

    wait_for(up, timeout, f"{url} to answer")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = redis_server.start(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


def start_stack(
    workdir: Path,
    redis_url: str,
    env: dict[str, str] | None = None,
    workers: int = 1,
    emulator_args: tuple[str, ...] = ("--ring-seconds", "0.1", "--no-answer-seconds", "0.3"),
    web_args: tuple[str, ...] = (),
) -> Stack:
    """Emulator, web and `workers` dial workers, started as the Procfile starts them;
    `web_args` are more arguments of `orchestrator web` (e.g. `--workers 2`)."""
    web_port, emulator_port = redis_server.free_port(), redis_server.free_port()
    base = f"http://127.0.0.1:{web_port}"
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    token = secrets.token_hex(16)
    full_env = {
        **{k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")},
        "REDIS_URL": redis_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_API_BASE_URL": emulator_url,
        "PUBLIC_BASE_URL": base,
        "TWILIO_CPS": "100",
        "DIAL_RETRY_BACKOFF": "1,1,1",
        "PORT": str(web_port),
        # The stack's web and workers share it: /metrics adds up all of theirs.
        "METRICS_DIR": str(workdir / "metrics"),
        **(env or {}),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(redis_url, base, emulator_url, token, full_env, workdir)
    stack.start(
        "emulator", "-m", "emulator", "--port", str(emulator_port),
        "--account-sid", ACCOUNT_SID, "--auth-token", token,
        "--voice-url", callback_urls.voice(base), *emulator_args,
    )  # fmt: skip
    stack.start("web", "-m", "orchestrator", "web", "--host", "127.0.0.1", *web_args)
    for n in range(workers):
        stack.start("worker" if n == 0 else f"worker{n}", "-m", "orchestrator", "worker")
    try:
        _wait_http(f"{emulator_url}/_emulator/health", list(stack.processes.values()))
        _wait_http(f"{base}/health", list(stack.processes.values()))
    except BaseException:
        stack.stop_all()
        raise
    return stack


@contextlib.contextmanager
def ringing_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, ring: float, no_answer: float
) -> Iterator[Stack]:
    """Its own Redis, emulator, web and worker, with callees that ring `ring` seconds
    (and give up unanswered after `no_answer`): for tests that watch a member ringing."""
    server = redis_server.start(tmp_path_factory.mktemp(f"{name}-redis"))
    stack = start_stack(
        tmp_path_factory.mktemp(f"{name}-stack"),
        server.url,
        emulator_args=("--ring-seconds", str(ring), "--no-answer-seconds", str(no_answer)),
    )
    try:
        yield stack
    finally:
        stack.stop_all()
        server.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), redis_url)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for value in getattr(request.node, "funcargs", {}).values():
            if isinstance(value, Stack):
                print(value.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass(frozen=True)
class Account:
    id: str
    number: str
    key: str
    user_id: str
    user_email: str


@pytest.fixture
def account(redis_url: str) -> Account:
    return new_account(redis_url)


def new_account(redis_url: str) -> Account:
    """A fresh account with a number, a user and a User key."""
    r = redis_client.connect_sync(redis_url)
    aid = provision.create_account(r, "Test Co")
    number = provision.add_number(r, random_number(), aid)
    email = f"agent-{secrets.token_hex(3)}@example.com"
    uid = provision.add_user(r, email, aid, name="Ada Agent", avatar="https://example.com/ada.png")
    return Account(aid, number, provision.create_key(r, aid, ["User"]), uid, email)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
