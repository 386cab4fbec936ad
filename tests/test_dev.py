"""`orchestrator dev` as a newcomer runs it: one command, then the printed curl."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One `orchestrator dev` for the module's tests; stopped with Ctrl-C after them."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TWILIO_CPS")}
    log = tmp_path_factory.mktemp("dev") / "dev.log"
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
                "user": r"user\s+(usr_\w+)",
                "queue": r"demo queue\s+.*\bid (que_\w+)",
                "queue_number": r"demo queue\s+.*\bnumber (\+\d+)",
                "queue_agents": r"queue agents\s+(.*):",
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
    first, transfer = dev["banner"].split("An agent's own call")[0].split("A warm transfer")
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


@pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's commands use curl")
def test_printed_commands_place_the_agents_own_call_and_a_click_to_call(
    dev: dict[str, str],
) -> None:
    """The demo agent's softphone is registered (it answers) and the service's TwiML App
    takes its calls: both of the walk-through's ways to call a customer connect."""
    user, headers = dev["user"], {"Authorization": f"Bearer {dev['key']}"}
    own, click = dev["banner"].split("An agent's own call")[1].split("Click to call")
    click = click.split("A ring queue")[0]
    own_commands, click_commands = _commands(own), _commands(click)
    assert len(own_commands) == 3 and len(click_commands) == 2, (own_commands, click_commands)
    assert f"/_emulator/softphones/{user}/calls" in own_commands[0]
    customer = re.search(r"To=(\+\d+)", own_commands[1]).group(1)

    def connected(sid: str) -> bool:
        session = net.get(f"{dev['api']}/sessions/{sid}", headers=headers).json()
        states = {m["identity"]: m["callState"] for m in session["members"]}
        return states == {user: "Connected", customer: "Connected"}

    # The call's answer, then (on the same line: curl adds no newline) GetMySessions'.
    call, _ = json.JSONDecoder().raw_decode(_run(own_commands))
    assert call["status"] == "in-progress" and call["said"] == [], call
    sid = call["conferenceName"]
    wait_until(lambda: connected(sid), 15, "the agent's own call to connect")
    mine = net.get(f"{dev['api']}/sessions/my", headers=headers).json()["sessions"]
    assert sid in [s["id"] for s in mine]

    clicked = json.loads(_run(click_commands).splitlines()[0])
    assert clicked["direction"] == "Outgoing" and clicked["destination"] == customer
    wait_until(lambda: connected(clicked["id"]), 15, "the click to call to connect")
    for session in (sid, clicked["id"]):
        assert net.request("DELETE", f"{dev['api']}/sessions/{session}", headers=headers).is_success


@pytest.mark.skipif(shutil.which("curl") is None, reason="the banner's commands use curl")
def test_printed_commands_queue_a_call_that_a_demo_queue_agent_answers_then_set_the_state(
    dev: dict[str, str],
) -> None:
    """The demo queue's number sends a call to the queue; one of its two demo agents (Ready,
    softphones that answer) takes it, not the demo agent (logged out); the demo agent's
    printed SetAgentState makes them Ready."""
    headers = {"Authorization": f"Bearer {dev['key']}"}
    agents = dict(re.findall(r"(usr_\w+) \(([^)]+)\)", dev["queue_agents"]))
    assert sorted(agents.values()) == ["Kim Support", "Sam Support"], dev["queue_agents"]
    assert dev["user"] not in agents
    call, state = dev["banner"].split("A ring queue")[1].split("The demo agent sets")
    commands, state_commands = _commands(call), _commands(state)
    assert len(commands) == 5 and len(state_commands) == 2, (commands, state_commands)
    assert f"To={dev['queue_number']}" in commands[1]
    assert "/_emulator/incoming" in commands[0] and "/queues " in commands[2]

    out = _run(commands)
    sid = re.search(r"SESSION=(ses_\w+)", out).group(1)
    # The printed GET /queues (its answer is the first line): the queue, its three agents.
    queues = json.JSONDecoder().raw_decode(out)[0]["queues"]
    queue = next(q for q in queues if q["id"] == dev["queue"])
    assert queue["name"] == "Support" and queue["strategy"] == "ring-all"
    states = {a["userId"]: a["agentState"] for a in queue["agents"]}
    assert states[dev["user"]] == "LoggedOut"
    assert set(states) == {*agents, dev["user"]}
    # The printed session fields, before an agent answered: the call is in the queue.
    assert re.search(r'"queueState":"(Queued|Ringing|Connected)"', out), out

    def session() -> dict:
        return net.get(f"{dev['api']}/sessions/{sid}", headers=headers).json()

    wait_until(lambda: session()["queueState"] == "Connected", 15, "a queue agent to answer")
    taken = session()
    assert taken["ringQueueId"] == dev["queue"]
    assert taken["queueMemberId"] in agents, (taken["queueMemberId"], agents)
    assert taken["answeredByName"] == agents[taken["queueMemberId"]]
    # Run again, as the banner says: the printed fields show who took it.
    again = _run(commands[-2:], sid)
    assert '"queueState":"Connected"' in again, again
    assert f'"queueMemberId":"{taken["queueMemberId"]}"' in again, again

    # The demo agent sets their state, as printed: Ready, and GetAppConfig agrees.
    answer = json.loads(_run(state_commands).splitlines()[0])
    assert answer == {"agentState": "Ready", "agentStateReason": "SetByUser"}, answer
    config = net.get(f"{dev['api']}/app/config", headers=headers).json()
    assert config["agentState"] == "Ready", config
    assert net.request("DELETE", f"{dev['api']}/sessions/{sid}", headers=headers).is_success
