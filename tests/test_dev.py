"""`orchestrator dev` as a newcomer runs it: one command, then the printed curl."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import pytest

from orchestrator.launch import Process, free_port, port_in_use, python, wait_until
from tests.support import net


def _listening(url: str) -> bool:
    host, port = re.match(r"\w+://([\d.]+):(\d+)", url).groups()
    return port_in_use(int(port), host)


@pytest.fixture
def dev(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TWILIO_CPS")}
    log = tmp_path / "dev.log"
    process = Process(
        "dev", python("-m", "orchestrator", "dev", "--port", str(free_port())), env, log
    )
    process.start()
    try:
        # Its children log to the same file: the banner is from its first line to Ctrl-C.
        text = wait_until(
            lambda: "Ctrl-C stops" in (t := log.read_text()) and t, 60, "the dev banner"
        )
        start = text.index("Conference orchestrator (dev) is running.")
        banner = text[start : text.index("Ctrl-C stops", start)]
        info = {
            name: re.search(pattern, banner).group(1)
            for name, pattern in {
                "api": r"API\s+(\S+)",
                "emulator": r"Twilio emulator\s+(\S+)",
                "redis": r"Redis\s+(\S+)",
                "key": r"API key\s+(\S+)",
            }.items()
        }
        info["banner"] = banner
        yield info
        process.signal(signal.SIGINT)  # as Ctrl-C in its terminal
        try:
            assert process.popen.wait(30) == 0, process.log()
        except subprocess.TimeoutExpired:
            raise AssertionError(process.log()) from None
        for url in (info["api"], info["emulator"], info["redis"]):
            assert not _listening(url), f"{url} still listening after Ctrl-C"
    finally:
        process.kill()


def _commands(block: str) -> list[str]:
    """The steps to run one after another (the event stream's `curl -N` runs until stopped)."""
    return [
        line
        for line in block.splitlines()
        if (re.match(r"^  (SESSION=|curl )", line) or re.match(r"^      \S", line))
        and "curl -N" not in line
    ]


def _run(commands: list[str], session: str = "") -> str:
    script = "set -e\n" + (f"SESSION={session}\n" if session else "") + "\n".join(commands)
    script += "\necho\necho SESSION=$SESSION\n"
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert '"responseStatus"' not in run.stdout, run.stdout
    return run.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's commands use curl")
def test_printed_commands_dial_a_member_who_connects_then_a_warm_transfer(
    dev: dict[str, str],
) -> None:
    assert dev["redis"].startswith("redis://127.0.0.1:")  # embedded, not the machine's
    first, transfer = dev["banner"].split("A warm transfer")
    commands = _commands(first)
    assert len(commands) == 5, commands
    sid = re.search(r"SESSION=(ses_\w+)", _run(commands)).group(1)
    user = re.search(r"user\s+(usr_\w+)", dev["banner"]).group(1)
    headers = {"Authorization": f"Bearer {dev['key']}"}

    def members() -> dict[str, dict]:
        session = net.get(f"{dev['api']}/sessions/{sid}", headers=headers).json()
        return {m["identity"]: m for m in session["members"]}

    def state(identity: str, value: str) -> bool:
        return members().get(identity, {}).get("callState") == value

    wait_until(lambda: state(user, "Connected"), 15, "the demo agent to connect")

    transfer, _, ending = transfer.partition("End the call")
    commands = _commands(transfer)
    assert len(commands) == 5, commands
    hold, invite, leave, resume = commands[:1], commands[1:3], commands[3:4], commands[4:5]
    _run(hold + invite, sid)
    caller = next(i for i, m in members().items() if m["role"] == "Caller")
    wait_until(lambda: state(caller, "Hold"), 15, "the customer on hold")
    wait_until(lambda: state("+14155550123", "Connected"), 15, "the colleague to connect")
    assert state("+14155550123", "Connected")  # joined while held, and not held
    _run(leave + resume, sid)
    wait_until(lambda: state(caller, "Connected"), 15, "the customer off hold")
    wait_until(lambda: state(user, "None"), 15, "the demo agent to leave")
    session = net.get(f"{dev['api']}/sessions/{sid}", headers=headers).json()
    # The printed event stream command shows the session's changes (from the start, here).
    stream = re.search(r"^  (curl -N .*)$", dev["banner"], re.M).group(1)
    replay = stream.replace("curl -N", "curl -N -s --max-time 2 -H 'Last-Event-ID: 0-0'")
    shown = subprocess.run(["bash", "-c", replay], capture_output=True, text=True).stdout
    assert ": connected" in shown and f'"sessionId":"{sid}"' in shown
    assert "event: SessionAnswered" in shown
    console = re.search(r"console\s+(\S+)", dev["banner"]).group(1)
    assert console == f"{dev['api']}/console#key={dev['key']}"
    page = net.get(console.split("#")[0])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    log = [e["message"] for e in session["log"]]
    assert "Demo Agent put the call on hold to transfer it" in log, log
    assert "Demo Agent took the call off hold" in log, log
    assert session["callState"] == "Connected" and session["heldByUserId"] is None
    # The printed command that ends the call runs as printed.
    _run(_commands(ending), sid)
