"""`orchestrator dev` as a newcomer runs it: one command, then the printed curl."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from orchestrator.redis_server import free_port
from tests.conftest import wait_for


def _listening(url: str) -> bool:
    host, port = re.match(r"\w+://([\d.]+):(\d+)", url).groups()
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture
def dev(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TWILIO_CPS")}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "dev", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "dev.err").open("w"),
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        banner = wait_for(
            lambda: "Ctrl-C" in "".join(lines) and "".join(lines), 60, "the dev banner"
        )
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
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(30) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError((tmp_path / "dev.err").read_text()[-3000:]) from None
        for url in (info["api"], info["emulator"], info["redis"]):
            assert not _listening(url), f"{url} still listening after Ctrl-C"
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's commands use curl")
def test_printed_commands_dial_a_member_who_connects(dev: dict[str, str]) -> None:
    assert dev["redis"].startswith("redis://127.0.0.1:")  # embedded, not the machine's
    commands = [
        line
        for line in dev["banner"].splitlines()
        if re.match(r"^  (SESSION=|curl )", line) or re.match(r"^      \S", line)
    ]
    assert len(commands) == 5, commands
    script = "set -e\n" + "\n".join(commands) + "\necho\necho SESSION=$SESSION\n"

    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert '"responseStatus"' not in run.stdout
    sid = re.search(r"SESSION=(ses_\w+)", run.stdout).group(1)

    def connected() -> bool:
        session = httpx.get(
            f"{dev['api']}/sessions/{sid}", headers={"Authorization": f"Bearer {dev['key']}"}
        ).json()
        return any(
            m["identity"] == "+14155550123" and m["callState"] == "Connected"
            for m in session["members"]
        )

    wait_for(connected, 15, "the demo member to connect")
