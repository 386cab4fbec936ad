"""An operator's first minutes, as an operator runs them: the help, the settings
named all at once, a role that exists, `orchestrator dev` on a taken port, the
web and worker against a Redis that is not there yet or hangs, and worker logs
that say what happened to whom."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from emulator.numbers import Outcome, outcome_for, valid_to
from orchestrator import redis_server
from orchestrator.cli import dev, parser
from orchestrator.launch import Process, free_port, port_in_use, python, wait_http, wait_until
from tests.support import net
from tests.support.accounts import Account, new_account, random_number
from tests.support.cli import cli
from tests.support.stack import Stack

REQUIRED = ("REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL")
# What the operator's own shell may hold that would fill in a setting the test leaves out.
SETTINGS = (*REQUIRED, "TWILIO_API_BASE_URL", "TWILIO_CPS", "LOG_FORMAT", "LOG_LEVEL", "PORT")


def _bare_env(**settings: str) -> dict[str, str]:
    """The test's environment without any of the service's settings, then `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return {**env, **settings}


def _service_env(redis_url: str, port: int, **settings: str) -> dict[str, str]:
    return _bare_env(
        REDIS_URL=redis_url,
        TWILIO_ACCOUNT_SID="AC" + "0e" * 16,
        TWILIO_AUTH_TOKEN="secret",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}",  # nobody: no call is placed
        PORT=str(port),
        **settings,
    )


# --- help ------------------------------------------------------------------------------


def _subcommands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Every command line below `p` (`("keys", "create")`, ...), with its summary."""
    for group in p._subparsers._group_actions if p._subparsers else ():
        if not isinstance(group, argparse._SubParsersAction):
            continue
        summaries = {a.dest: a.help for a in group._choices_actions}
        for name, child in group.choices.items():
            yield (*path, name), summaries.get(name)
            yield from _subcommands(child, (*path, name))


def test_every_command_has_a_summary_in_its_help_and_the_top_level_help() -> None:
    commands = list(_subcommands(parser()))
    assert {c[0] for c, _ in commands} == {
        "dev", "web", "worker", "accounts", "numbers", "users", "keys", "twilio", "queues",
    }  # fmt: skip
    top = cli("--help")
    assert top.returncode == 0, top.stderr
    # The top level's description is whole sentences, not one cut mid-way.
    description = top.stdout.split("\n\n")[1]
    assert description.strip().endswith("."), description
    top_text = " ".join(top.stdout.split())
    for command, summary in commands:
        assert summary, f"{' '.join(command)} has no summary"
        if len(command) == 1:  # listed at the top with its summary
            assert f"{command[0]} {' '.join(summary.split())}" in top_text, command
        own = cli(*command, "--help")
        assert own.returncode == 0, own.stderr
        assert " ".join(summary.split()) in " ".join(own.stdout.split()), command


def test_web_and_worker_help_name_their_settings_and_what_happens_without_redis() -> None:
    for command in ("web", "worker"):
        text = cli(command, "--help").stdout
        for name in (*REQUIRED, "TWILIO_CPS", "LOG_FORMAT", "REDIS_MIN_REPLICAS"):
            assert name in text, (command, name)
        assert "Redis unreachable" in text and "orchestrator dev" in text


# --- settings --------------------------------------------------------------------------


def test_web_and_worker_name_every_missing_and_malformed_setting_in_one_run() -> None:
    nothing = _bare_env()
    for command in ("web", "worker"):
        result = cli(command, env=nothing)
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert sorted(line for line in lines if "required but not set" in line) == sorted(
            f"orchestrator: {name} is required but not set" for name in REQUIRED
        )
        assert "orchestrator dev" in lines[-1], lines

    some = _bare_env(
        REDIS_URL="http://redis", TWILIO_AUTH_TOKEN="secret", TWILIO_CPS="0", LOG_FORMAT="yaml"
    )
    result = cli("worker", env=some)
    assert result.returncode == 2
    named = result.stderr
    for name in ("REDIS_URL", "TWILIO_ACCOUNT_SID", "PUBLIC_BASE_URL", "TWILIO_CPS", "LOG_FORMAT"):
        assert f"orchestrator: {name} " in named, (name, named)
    assert "TWILIO_AUTH_TOKEN" not in named


# --- keys ------------------------------------------------------------------------------


def test_keys_refuse_a_role_no_request_accepts_and_take_any_case(
    stack: Stack, account: Account
) -> None:
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    before = cli("keys", "list", "--account", account.id, env=env).stdout
    for role in ("Supervisor", "Users", "admins"):
        refused = cli("keys", "create", "--account", account.id, "--role", role, env=env)
        assert refused.returncode == 2 and refused.stdout == ""
        assert f"unknown role '{role}'" in refused.stderr
        assert "User and Admin" in refused.stderr and "case does not matter" in refused.stderr
    assert cli("keys", "list", "--account", account.id, env=env).stdout == before  # none made

    # Any case of a role that exists is that role: the key works.
    for role in ("user", "ADMIN"):
        made = cli("keys", "create", "--account", account.id, "--role", role, env=env)
        assert made.returncode == 0, made.stderr
        with stack.client(made.stdout.strip()) as c:
            assert c.get("/sessions/active").status_code == 200, role
    listed = cli("keys", "list", "--account", account.id, env=env).stdout
    assert " User " in listed and " Admin " in listed


# --- dev -------------------------------------------------------------------------------


def test_dev_on_a_taken_port_says_so_before_it_starts_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        started = time.monotonic()
        result = cli("dev", "--port", str(port), env=env)
    assert result.returncode != 0
    assert result.stdout == ""  # no banner, no key for a service that never ran
    assert f"port {port} is already in use" in result.stderr and "--port" in result.stderr
    assert time.monotonic() - started < 10  # refused at once, nothing started and stopped


def test_dev_banner_lists_every_callee_behaviour_and_says_what_it_runs() -> None:
    text = dev.banner("http://api", "http://emu", "redis://r", "acc_1", "usr_1", "key")
    # Every number ending the emulator plays other than an answer is explained.
    for n in range(10_000):
        number = f"+1415555{n:04d}"
        if not valid_to(number) or outcome_for(number) is not Outcome.ANSWER:
            assert f"ending {n:04d}" in text, n
    assert outcome_for("client:offline-sam") is not Outcome.ANSWER
    assert "with none registered, rings unanswered" in text  # a client: with no softphone
    # The words match the commands: the first invite is the demo agent's.
    intro, commands = text.split("Try it:")[1].split("SESSION=", 1)
    assert "demo agent" in intro and dev.DEMO_EMAIL in intro
    first_invite = re.search(r'"memberToAdd": "([^"]+)"', commands).group(1)
    assert first_invite == dev.DEMO_EMAIL
    # Ending the call is a command to run, as every other step.
    assert re.search(r"^  curl -s -X DELETE http://api/sessions/\$SESSION -H", text, re.M)


# --- web and worker: where they listen, and Redis away ---------------------------------


def test_web_logs_its_url_once_it_listens(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    web = Process(
        "web",
        python("-m", "orchestrator", "web", "--host", "127.0.0.1", "--port", str(port)),
        _service_env(redis_url, port),
        tmp_path / "web.log",
    ).start()
    try:
        line = f"orchestrator.web: listening on http://127.0.0.1:{port}"
        wait_until(lambda: line in web.log() or not web.alive(), 30, "the listening line")
        assert web.alive(), web.log()
        assert port_in_use(port)  # it listens by the time it says so
        assert web.log().count("listening on") == 1
    finally:
        web.stop()


def test_without_redis_web_and_worker_both_start_wait_and_recover(tmp_path: Path) -> None:
    """Both start and wait for Redis, saying so; neither exits; both serve once it is up."""
    redis_port, port = free_port(), free_port()
    env = _service_env(f"redis://127.0.0.1:{redis_port}/0", port)
    web = Process(
        "web", python("-m", "orchestrator", "web", "--host", "127.0.0.1"), env, tmp_path / "web.log"
    ).start()
    worker = Process(
        "worker", python("-m", "orchestrator", "worker"), env, tmp_path / "worker.log"
    ).start()
    server = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", [web, worker])
        ready = net.get(f"http://127.0.0.1:{port}/ready")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "1"
        assert "does not answer" in web.log() and "answering 503" in web.log()
        wait_until(lambda: "waiting for it" in worker.log(), 20, "the worker's waiting line")
        assert worker.alive(), worker.log()

        server = redis_server.start(tmp_path / "redis", port=redis_port)
        wait_until(lambda: "answers; starting" in worker.log(), 20, "the worker to start")
        wait_until(
            lambda: net.get(f"http://127.0.0.1:{port}/ready").status_code == 200,
            20,
            "the web process to be ready",
        )
        assert worker.alive() and web.alive()
    finally:
        for p in (web, worker):
            p.stop()
        if server is not None:
            server.stop()


def test_a_hung_redis_is_answered_503_within_two_seconds(tmp_path: Path) -> None:
    server = redis_server.start(tmp_path / "redis")
    port = free_port()
    web = Process(
        "web",
        python("-m", "orchestrator", "web", "--host", "127.0.0.1", "--port", str(port)),
        _service_env(server.url, port),
        tmp_path / "web.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", [web])
        account = new_account(server.url)
        other = new_account(server.url)  # a key this web process has not cached yet
        headers = {"Authorization": f"Bearer {account.key}"}
        with net.client(base_url=base, timeout=30) as c:
            assert c.get("/sessions/active", headers=headers).status_code == 200
            server.process.signal(signal.SIGSTOP)  # hung: its connections stay open
            for path, key in (("/sessions/active", account.key), ("/sessions/active", other.key)):
                started = time.monotonic()
                response = c.get(path, headers={"Authorization": f"Bearer {key}"})
                took = time.monotonic() - started
                print(f"hung Redis: {path} answered {response.status_code} in {took:.2f} s")
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "1"
                assert response.json()["responseStatus"]["errorCode"] == "ServiceUnavailable"
                assert took < 2, took
            server.process.signal(signal.SIGCONT)
            wait_until(
                lambda: c.get("/sessions/active", headers=headers).status_code == 200,
                10,
                "the API to answer again",
            )
    finally:
        server.process.signal(signal.SIGCONT)
        web.stop()
        server.stop()


# --- worker logs -----------------------------------------------------------------------


def test_worker_logs_name_members_and_say_what_was_done(stack: Stack, account: Account) -> None:
    caller, colleague = random_number(), random_number()
    sid = stack.incoming_call(caller, account.number)["conferenceName"]
    worker = stack.processes["worker"]
    assert worker.log_path is not None

    def logged(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, worker.log_path.read_text(errors="replace"), re.M)

    def state(identity: str) -> str | None:
        with stack.client(account.key) as c:
            members = c.get(f"/sessions/{sid}").json()["members"]
        return next((m["callState"] for m in members if m["identity"] == identity), None)

    stack.add_member(account.key, sid, colleague)
    wait_until(lambda: state(colleague) == "Connected", 15, "the colleague to connect")
    assert logged(rf"dialled {re.escape(colleague)} in session {sid}: call CA\w+$")
    with stack.client(account.key) as c:
        assert c.post(f"/sessions/{sid}/hold", json={"reason": "Transferring"}).is_success
    held = rf"put {re.escape(caller)} on hold in session {sid}$"
    wait_until(lambda: logged(held), 15, "the hold's log line")
    with stack.client(account.key) as c:
        assert c.delete(f"/sessions/{sid}/members/{colleague}").is_success
    removed = rf"removed {re.escape(colleague)} in session {sid}: left the call$"
    wait_until(lambda: logged(removed), 15, "the removal's log line")
    with stack.client(account.key) as c:
        assert c.delete(f"/sessions/{sid}").is_success
    wait_until(lambda: logged(rf"ended the conference of session {sid}$"), 15, "the end")
    # The text lines of this session speak of numbers, not member ids or Python values.
    lines = [
        line
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if sid in line and ("orchestrator.dial" in line or "orchestrator.control" in line)
    ]
    assert len(lines) >= 4, lines
    for line in lines:
        assert "mem_" not in line and "{" not in line, line
