"""`orchestrator dev`: the whole service on one machine with no set-up.

Starts an embedded Redis (unless REDIS_URL is set), the Twilio emulator, the
web process and a worker, provisions a demo account, and prints what to try.
Each part is a real process, started exactly as an operator would start it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from orchestrator import callback_urls, provision, redis_client, redis_server

DEV_ACCOUNT_SID = "AC" + "de70" * 8
DEMO_NUMBER = "+14155550100"
DEMO_CALLER = "+14155550199"
DEMO_MEMBER = "+14155550123"


def _wait_http(url: str, processes: list[subprocess.Popen], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[2:4]} exited with {p.returncode} during start-up")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


def _stop(processes: list[subprocess.Popen]) -> None:
    """Children run in their own sessions (a terminal's Ctrl-C reaches only us), so
    we stop them here, before Redis, which they need to shut down cleanly."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    # One deadline for all: a child that will not stop in time is killed, so Ctrl-C
    # always ends the whole set within seconds.
    deadline = time.monotonic() + 8
    for p in processes:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"orchestrator dev: {p.args[2:4]} did not stop; killing it", file=sys.stderr)
            p.kill()
            p.wait()


def run(port: int = 8000) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="orchestrator-dev-"))
    embedded = None
    redis_url = os.environ.get("REDIS_URL", "").strip()
    if not redis_url:
        embedded = redis_server.start(workdir / "redis")
        redis_url = embedded.url

    base = f"http://127.0.0.1:{port}"
    emulator_port = redis_server.free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "TWILIO_ACCOUNT_SID": os.environ.get("TWILIO_ACCOUNT_SID") or DEV_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "TWILIO_API_BASE_URL": emulator_url,
        "PUBLIC_BASE_URL": base,
        "TWILIO_CPS": os.environ.get("TWILIO_CPS", "10"),
        "PORT": str(port),
        # One metrics directory for the web and the worker, new with each run.
        "METRICS_DIR": os.environ.get("METRICS_DIR") or str(workdir / "metrics"),
    }
    env.pop("TWILIO_REGION", None)
    env.pop("TWILIO_EDGE", None)
    py = sys.executable
    processes: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Both, explicitly: a shell that starts us in the background leaves SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        processes.append(
            subprocess.Popen(
                [py, "-m", "emulator", "--port", str(emulator_port),
                 "--account-sid", env["TWILIO_ACCOUNT_SID"],
                 "--auth-token", env["TWILIO_AUTH_TOKEN"],
                 "--voice-url", callback_urls.voice(base), "--ring-seconds", "2"],
                env=env, start_new_session=True,
            )
        )  # fmt: skip
        processes.append(
            subprocess.Popen(
                [py, "-m", "orchestrator", "web", "--host", "127.0.0.1"],
                env=env,
                start_new_session=True,
            )
        )
        processes.append(
            subprocess.Popen([py, "-m", "orchestrator", "worker"], env=env, start_new_session=True)
        )
        _wait_http(f"{emulator_url}/_emulator/health", processes)
        _wait_http(f"{base}/health", processes)

        r = redis_client.connect_sync(redis_url)
        account = provision.create_account(r, "Demo")
        provision.add_number(r, DEMO_NUMBER, account)
        user = provision.add_user(r, "agent@example.com", account, name="Demo Agent")
        # The demo key acts as the demo user: what it does is logged as "Demo Agent ...".
        key = provision.create_key(r, account, ["User"], user=user)
        print(_banner(base, emulator_url, redis_url, account, user, key), flush=True)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("orchestrator dev: a process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
        return 0
    finally:
        _stop(processes)
        if embedded is not None:
            embedded.stop()


def _banner(base: str, emulator: str, redis_url: str, account: str, user: str, key: str) -> str:
    auth = f'-H "Authorization: Bearer {key}"'
    json = "-H 'Content-Type: application/json'"
    return f"""
Conference orchestrator (dev) is running.

  API             {base}
  Twilio emulator {emulator}
  Redis           {redis_url}
  demo account    {account}   number {DEMO_NUMBER}   user {user} (agent@example.com)
  API key         {key}   (acts as the demo user, "Demo Agent")
  console         {base}/console#key={key}

Open the console in a browser: it shows the account's calls live as the steps
below change them, and has buttons for the same steps.

Try it: a customer calls the demo number, then we invite a phone number into the call.

  SESSION=$(curl -s -H 'Accept: text/plain' -X POST {emulator}/_emulator/incoming \\
      --data-urlencode From={DEMO_CALLER} --data-urlencode To={DEMO_NUMBER})
  curl -s -X POST {base}/sessions/$SESSION/members {auth} \\
      {json} -d '{{"memberToAdd": "agent@example.com"}}'
  curl -s {base}/sessions/$SESSION {auth}

Run the last command again (or watch the console): the demo agent goes Ringing,
then Connected after ~2 s. The same changes stream live, as server-sent events:

  curl -N {base}/sessions/events {auth}

Numbers ending 0001 are busy, 0002 never answer, 0003 fail.

A warm transfer, once the agent is Connected: hold the customer, bring in a
colleague, the agent leaves, the customer is taken off hold with the colleague.

  curl -s -X POST {base}/sessions/$SESSION/hold {auth} {json} -d '{{"reason": "Transferring"}}'
  curl -s -X POST {base}/sessions/$SESSION/members {auth} \\
      {json} -d '{{"memberToAdd": "{DEMO_MEMBER}"}}'
  curl -s -X DELETE {base}/sessions/$SESSION/members/agent@example.com {auth}
  curl -s -X PATCH {base}/sessions/$SESSION {auth} {json} -d '{{"callState": "Connected"}}'

(wait for the colleague to be Connected before the last two). Ending the call is
DELETE {base}/sessions/$SESSION; every operation is described at
{base}/openapi.json. Ctrl-C stops everything.
"""
