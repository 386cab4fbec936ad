"""The service as the tests run it: the Twilio emulator, the web process and
workers, started by `orchestrator.launch` as the Procfile starts them, against a
Redis the suite started. `Stack` adds what the tests ask of a running service:
an API client, incoming calls, the emulator's records and Redis itself."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from orchestrator import keys, provision, redis_client, redis_server
from orchestrator.launch import Process, Service, free_port, python, wait_http, wait_until
from tests.support import net
from tests.support.accounts import Account, Team, random_number

ACCOUNT_SID = "AC" + "7e57" * 8

# Callees answer after 0.1 s and give up unanswered after 0.3 s: quick tests.
QUICK_CALLEES = ("--ring-seconds", "0.1", "--no-answer-seconds", "0.3")

# What the tests change of the service's defaults: no dial-rate wait, quick retries.
TEST_SETTINGS = {"TWILIO_CPS": "100", "DIAL_RETRY_BACKOFF": "1,1,1"}


@dataclass
class Stack:
    """One running service (a `launch.Service`) and the helpers the tests share."""

    service: Service

    @property
    def redis_url(self) -> str:
        return self.service.redis_url

    @property
    def base_url(self) -> str:
        return self.service.base_url

    @property
    def emulator_url(self) -> str:
        return self.service.emulator_url

    @property
    def auth_token(self) -> str:
        return self.service.auth_token

    @property
    def env(self) -> dict[str, str]:
        """The environment of the service's processes (a fresh copy each time)."""
        return self.service.env

    @property
    def workdir(self) -> Path:
        assert self.service.workdir is not None
        return self.service.workdir

    @property
    def processes(self) -> dict[str, Process]:
        return self.service.processes

    @property
    def redis(self) -> redis.Redis:
        return redis_client.connect_sync(self.redis_url, decode_responses=True)

    def session_log(self, sid: str) -> list[dict[str, str]]:
        """A session's log entries, oldest first, as Redis holds them."""
        return [json.loads(e) for e in self.redis.lrange(keys.session_log(sid), 0, -1)]

    def start(self, name: str, *args: str) -> Process:
        """Start `python *args` as the process `name` with the service's environment
        (e.g. a worker again after a test killed it)."""
        return self.service.spawn(name, python(*args))

    def add_web(self, name: str, **settings: str) -> str:
        """Another `orchestrator web` on the same Redis and a port of its own, as a second
        machine would run it (`settings` override its environment); its base URL, once
        it answers."""
        port = free_port()
        args = python("-m", "orchestrator", "web", "--host", "127.0.0.1", "--port", str(port))
        process = self.service.spawn(name, args, {**self.env, "PORT": str(port), **settings})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", [process])
        return url

    def stop(self, name: str) -> None:
        """Stop the process `name` and forget it."""
        self.service.stop(name)

    def stop_all(self) -> None:
        self.service.stop_all()

    def logs(self) -> str:
        return self.service.logs()

    def client(self, key: str | None = None) -> httpx.Client:
        """An API client, authenticated with `key` when there is one."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return net.client(base_url=self.base_url, headers=headers, timeout=10)

    def incoming_call(self, from_: str, to: str) -> dict[str, Any]:
        """A caller dials `to`: the emulator places the call and Twilio's voice webhook
        opens a session; returns the emulator's record of the call."""
        response = net.post(
            f"{self.emulator_url}/_emulator/incoming", data={"From": from_, "To": to}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    def emulator(self, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        """A request to the emulator's own control API (docs/emulator.md)."""
        return net.request(method, f"{self.emulator_url}/_emulator/{path}", timeout=10, **kwargs)

    def creates(self, label: str) -> int:
        """How many calls the emulator was asked to place for the member `label`."""
        return self.emulator("creates").json()["byLabel"].get(label, 0)

    def softphone(self, api_key: str, answer: str = "answer") -> dict[str, Any]:
        """The user of `api_key` registers a softphone at the emulator, as Twilio's Voice SDK
        does: the access token from GetAppConfig, and how it takes calls (`answer`,
        `decline` or `ignore`); returns the emulator's record of it (`identity`, ...)."""
        with self.client(api_key) as c:
            config = c.get("/app/config")
        assert config.status_code == 200, config.text
        token = config.json()["accessToken"]
        registered = self.emulator(
            "softphones", "POST", data={"AccessToken": token, "Answer": answer}
        )
        assert registered.status_code == 201, registered.text
        return registered.json()

    def user_online(self, account: Account, answer: str = "answer") -> dict[str, Any]:
        """The account's user registers a softphone (through a key made to act as them)."""
        r = redis_client.connect_sync(self.redis_url)
        key = provision.create_key(r, account.id, ["User"], user=account.user_id)
        return self.softphone(key, answer)

    def online(self, team: Team, answer: str = "answer") -> Team:
        """Both agents of `team` register a softphone that takes calls as `answer` says:
        an invite of a user rings only a registered softphone (docs/emulator.md)."""
        self.softphone(team.ada_key, answer)
        self.softphone(team.bob_key, answer)
        return team

    def place_call(self, identity: str, to: str, **params: str) -> dict[str, Any]:
        """The softphone registered as `identity` calls `to` (`device.connect`), with custom
        `params` (e.g. callerId); the emulator's answer: callSid, status, conferenceName,
        conferenceSid, and what the agent heard (`said`)."""
        placed = self.emulator(f"softphones/{identity}/calls", "POST", data={"To": to, **params})
        assert placed.is_success, placed.text
        return placed.json()

    def add_member(self, key: str, sid: str, address: str) -> str:
        """Invite `address` to the session through the API as the holder of `key`;
        the new member's id."""
        with self.client(key) as c:
            response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": address})
        assert response.is_success, response.text
        return wait_until(
            lambda: self.redis.hget(keys.session_active(sid), address), 10, f"{address} invited"
        )

    def open_sessions(self, number: str, count: int) -> list[str]:
        """`count` incoming calls to `number`, each opening a session; their ids."""
        return [self.incoming_call(random_number(), number)["conferenceName"] for _ in range(count)]


def start_stack(
    workdir: Path,
    redis_url: str,
    env: dict[str, str] | None = None,
    workers: int = 1,
    emulator_args: tuple[str, ...] = QUICK_CALLEES,
    web_args: tuple[str, ...] = (),
    softphones: bool = True,
) -> Stack:
    """Emulator, `orchestrator twilio setup` against it (unless `softphones` is False: then
    GetAppConfig answers NotConfigured), web and `workers` dial workers, started as the
    Procfile starts them; returns once the emulator and the web process answer. `env`
    overrides settings; `web_args` are more arguments of `orchestrator web` (e.g.
    `--workers 2`)."""
    service = Service(
        redis_url,
        workdir,
        account_sid=ACCOUNT_SID,
        auth_token=secrets.token_hex(16),
        settings={**TEST_SETTINGS, **(env or {})},
        softphones=softphones,
    )
    service.start(workers, emulator_args, web_args)
    return Stack(service)


class OwnStacks:
    """Starts stacks of a test's own (for tests that break their processes or Redis):
    `own_stack(redis_url, **start_stack's options)`; every one is stopped after the test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Stack] = []

    def __call__(self, redis_url: str, **options: Any) -> Stack:
        stack = start_stack(self.workdir / f"stack{len(self.started)}", redis_url, **options)
        self.started.append(stack)
        return stack


@contextlib.contextmanager
def running_stack(workdir: Path, redis_url: str, **options: Any) -> Iterator[Stack]:
    """`start_stack(workdir, redis_url, **options)`, stopped when the block ends."""
    stack = start_stack(workdir, redis_url, **options)
    try:
        yield stack
    finally:
        stack.stop_all()


@contextlib.contextmanager
def private_stack(workdir: Path, **options: Any) -> Iterator[Stack]:
    """A Redis of its own and a stack on it (`start_stack`'s options), for tests that
    break them or whose queues and dial rate no other test's workers may share; both
    stopped when the block ends."""
    server = redis_server.start(workdir / "redis")
    try:
        with running_stack(workdir / "stack", server.url, **options) as stack:
            yield stack
    finally:
        server.stop()


@contextlib.contextmanager
def ringing_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, ring: float, no_answer: float
) -> Iterator[Stack]:
    """Its own Redis, emulator, web and worker, with callees that ring `ring` seconds
    (and give up unanswered after `no_answer`): for tests that watch a member ringing."""
    args = ("--ring-seconds", str(ring), "--no-answer-seconds", str(no_answer))
    with private_stack(tmp_path_factory.mktemp(name), emulator_args=args) as stack:
        yield stack
