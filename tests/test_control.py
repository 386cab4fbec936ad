"""Session control through real processes (Redis, emulator, web, worker): removing a
member in each state it can be in, hold, mute and resume, the caller hanging up,
EndSession, blind transfer, Twilio faults on control requests and a worker killed
with a control job queued or running (RQ notices a control job abandoned mid-run
once its timeout, CONTROL_TIMEOUT + 2 s, has passed). Every outcome is
read back from the emulator (what Twilio was asked, what it did, which callbacks it
sent: `GET /_emulator/calls/{sid}`) and from the API.

The module shares one stack with its own Redis (`ctl`); a callee that never answers
rings there for 20 s, so a leg that ends sooner was ended by us. Tests that fault
Twilio clear the fault when they end; those that SIGKILL a worker have their own stack.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq.job import Job

from orchestrator import jobs, keys
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Team, new_team, random_number
from tests.support.queues import control_queue, dial_queue
from tests.support.stack import ACCOUNT_SID, Stack, private_stack

LIVE = frozenset({"queued", "ringing", "in-progress"})
HOLD_MUSIC = "https://music.example.com/hold.mp3"
NO_ANSWER_SECONDS = 20
EMULATOR_ARGS = ("--ring-seconds", "0.1", "--no-answer-seconds", str(NO_ANSWER_SECONDS))


def number_ending(suffix: str) -> str:
    """A number the emulator gives an outcome to: 0001 busy, 0002 rings and never answers."""
    return random_number()[:-4] + suffix


def control_stack(workdir: Path) -> contextlib.AbstractContextManager[Stack]:
    """Redis, emulator, web and one worker of their own, with hold music and callees
    that ring for a while."""
    return private_stack(workdir, env={"HOLD_MUSIC_URL": HOLD_MUSIC}, emulator_args=EMULATOR_ARGS)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with control_stack(tmp_path_factory.mktemp("control")) as stack:
        yield stack


@pytest.fixture
def acct(ctl: Stack) -> Team:
    return ctl.online(new_team(ctl.redis_url))


# --- the emulator: what Twilio was asked and what it did -------------------------------


def rest(stack: Stack, path: str, method: str = "GET", **kw: Any) -> httpx.Response:
    """A request to the emulator's Twilio REST API, as Twilio's client makes it."""
    return net.request(
        method,
        f"{stack.emulator_url}/2010-04-01/Accounts/{ACCOUNT_SID}/{path}",
        auth=(ACCOUNT_SID, stack.auth_token),
        timeout=10,
        **kw,
    )


def emu_call(stack: Stack, call_sid: str) -> dict[str, Any]:
    response = stack.emulator(f"calls/{call_sid}")
    assert response.status_code == 200, response.text
    return response.json()


def legs(stack: Stack, label: str) -> list[dict[str, Any]]:
    """Every call the emulator placed for a member (labelled with its id)."""
    return [c for c in stack.emulator("calls").json()["calls"] if c["label"] == label]


def assert_no_live_leg(stack: Stack, label: str) -> None:
    live = [(c["sid"], c["status"]) for c in legs(stack, label) if c["status"] in LIVE]
    assert not live, f"{label} still has a live leg: {live}"


def events(call: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The conference callbacks `name` about this call that reached us (2xx)."""
    return [
        cb["params"]
        for cb in call["callbacks"]
        if cb["params"].get("StatusCallbackEvent") == name and 200 <= cb["status"] < 300
    ]


def sent(stack: Stack, call_sid: str, name: str, timeout: float = 10) -> dict[str, Any]:
    """The call, once a conference callback `name` about it has reached us (the emulator
    notes a delivery when our answer is back, which can be just after we applied it)."""
    return wait_until(
        lambda: events(c := emu_call(stack, call_sid), name) and c,
        timeout,
        f"{name} of {call_sid} to reach us",
    )


def call_statuses(call: dict[str, Any]) -> list[str]:
    """The call-progress callbacks about this call that reached us (2xx), in order."""
    return [
        cb["params"]["CallStatus"]
        for cb in call["callbacks"]
        if cb["params"].get("CallbackSource") == "call-progress-events"
        and 200 <= cb["status"] < 300
    ]


def asked(call: dict[str, Any], operation: str, param: str | None = None) -> list[dict]:
    """The REST requests of `operation` about this call (with `param` among their form
    values when given)."""
    return [
        r
        for r in call["requests"]
        if r["operation"] == operation and (param is None or param in r["params"])
    ]


def assert_removed_once(stack: Stack, call_sid: str, timeout: float, what: str) -> None:
    """The leg left its conference because the service removed it, asked of Twilio once."""
    call = wait_until(
        lambda: events(c := emu_call(stack, call_sid), "participant-leave") and c, timeout, what
    )
    (leave,) = events(call, "participant-leave")
    assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    assert len(asked(call, "DeleteParticipant")) == 1


def participant(stack: Stack, conference_sid: str, call_sid: str) -> dict[str, Any] | None:
    response = rest(stack, f"Conferences/{conference_sid}/Participants/{call_sid}.json")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def seq(params: dict[str, Any]) -> int:
    """A conference callback's place among the conference's events."""
    return int(params["SequenceNumber"])


# --- one call, driven through the API --------------------------------------------------


class Session:
    """An incoming call (its caller in the conference) and what the API does with it."""

    def __init__(self, stack: Stack, acct: Team) -> None:
        self.stack, self.acct = stack, acct
        self.r = stack.redis
        call = stack.incoming_call(random_number(), acct.number)
        self.sid: str = call["conferenceName"]
        self.caller_sid: str = call["callSid"]
        self.conference_sid: str = call["conferenceSid"]
        self.caller: str = self.r.get(keys.call(self.caller_sid)).split()[1]
        self.wait_state(self.caller, "Connected")

    def api(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        with self.stack.client(key or self.acct.key) as c:
            return c.request(method, path.format(sid=self.sid), **kw)

    def get(self) -> dict[str, Any]:
        response = self.api("GET", "/sessions/{sid}")
        assert response.status_code == 200, response.text
        return response.json()

    def invite(self, who: str, key: str | None = None) -> str:
        """Invite a number or a user (by id); returns the new member's id."""
        response = self.api("POST", "/sessions/{sid}/members", key, json={"memberToAdd": who})
        assert response.status_code == 200, response.text
        address = f"client:{who}" if who.startswith("usr_") else who
        mid = self.r.hget(keys.session_active(self.sid), address)
        assert mid, f"no member for {who}"
        return mid

    def key(self, mid: str) -> str:
        return keys.member(self.sid, mid)

    def internals(self, mid: str) -> dict[str, str]:
        return self.r.hgetall(self.key(mid))

    def identity(self, mid: str) -> str:
        return self.r.hget(self.key(mid), "identity")

    def member(self, mid: str, session: dict[str, Any] | None = None) -> dict[str, Any]:
        """The member as SessionInfo shows it."""
        identity = self.identity(mid)
        members = (session or self.get())["members"]
        return next(m for m in members if m["identity"] == identity)

    def wait_state(self, mid: str, state: str, timeout: float = 10) -> dict[str, Any]:
        return wait_until(
            lambda: (m := self.member(mid))["callState"] == state and m,
            timeout,
            f"{self.identity(mid)} to be {state}",
        )

    def wait_final(self, mid: str, timeout: float = 10) -> None:
        wait_until(lambda: self.r.hget(self.key(mid), "_rank") == "3", timeout, f"{mid} final")
        assert self.member(mid)["callState"] == "None"

    def call_sid(self, mid: str) -> str:
        return wait_until(lambda: self.r.hget(self.key(mid), "callSid"), 10, f"{mid}'s leg")

    def connected(self, who: str) -> tuple[str, str]:
        """Invite and wait until in the call: (member id, CallSid)."""
        mid = self.invite(who)
        self.wait_state(mid, "Connected")
        return mid, self.call_sid(mid)

    def remove(self, mid: str, key: str | None = None) -> dict[str, Any]:
        """DeleteChatMember by the member's identity, as an app names it."""
        identity = self.identity(mid)
        response = self.api(
            "DELETE", f"/sessions/{{sid}}/members/{mid}", key, params={"memberToRemove": identity}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def update(self, call_sid: str, key: str | None = None, **change: bool) -> dict[str, Any]:
        response = self.api("PATCH", f"/sessions/{{sid}}/conference/members/{call_sid}", key,
                            json=change)  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    def log(self) -> list[str]:
        return [e["message"] for e in self.stack.session_log(self.sid)]

    def control_seq(self) -> int:
        """How many control jobs the session's changes have asked for."""
        return int(self.r.hget(keys.session(self.sid), "_ctlseq") or 0)

    def control_idle(self) -> bool:
        """Every control job of the session has run and succeeded (RQ deletes them then)."""
        return not any(self.r.scan_iter(Job.key_for(f"ctl-{self.sid}-*")))

    def wait_control_idle(self, timeout: float = 10) -> None:
        wait_until(self.control_idle, timeout, f"the control jobs of {self.sid} to finish")


def held_at_twilio(s: Session, call_sid: str) -> bool:
    found = participant(s.stack, s.conference_sid, call_sid)
    return bool(found and found["hold"])


# --- removing a member, by its state when the request lands ----------------------------


def test_a_member_removed_before_its_dial_job_runs_is_never_dialled(ctl: Stack, acct: Team) -> None:
    s = Session(ctl, acct)
    ctl.processes["worker"].stop()  # no worker: the dial job waits in the queue
    try:
        target = random_number()
        mid = s.invite(target)
        assert jobs.job_id(mid) in dial_queue(ctl.redis).get_job_ids()
        session = s.remove(mid, acct.ada_key)
        assert s.member(mid, session)["callState"] == "None"
        assert s.internals(mid)["_rank"] == "3"
    finally:
        ctl.start("worker", "-m", "orchestrator", "worker")
    job = Job.fetch(f"dial-{mid}", connection=redis.Redis.from_url(ctl.redis_url))
    wait_until(lambda: job.get_status(refresh=True) == "finished", 20, "the dial job to run")
    assert job.return_value() == "final"
    assert ctl.creates(mid) == 0
    assert legs(ctl, mid) == []
    assert "callSid" not in s.internals(mid)
    log = s.log()
    assert log.count(f"Ada Agent removed {target}") == 1, log
    assert not [e for e in log if e.startswith("Dialled ")], log
    assert s.member(mid)["callState"] == "None"


def test_a_member_removed_while_its_create_is_in_flight_is_hung_up_once_placed(
    ctl: Stack, acct: Team
) -> None:
    s = Session(ctl, acct)
    delay = 2.0
    ctl.emulator("faults", "POST", data={"mode": "delay", "seconds": str(delay), "count": "1"})
    try:
        target = random_number()
        mid = s.invite(target)
        # Twilio has the participant; its answer (the CallSid) is held back for `delay` s.
        wait_until(lambda: ctl.creates(mid) == 1, 10, "the create to reach Twilio")
        fields = s.internals(mid)
        assert fields["_attempts"] == "1" and float(fields["_lease"]) > time.time()
        assert "callSid" not in fields, "the create answered too soon to test anything"
        session = s.remove(mid)
        assert s.member(mid, session)["callState"] == "None"
        assert s.internals(mid)["_removed"] == "1"
    finally:
        ctl.emulator("faults", "POST", data={"count": "0"})
    (leg,) = wait_until(
        lambda: (found := legs(ctl, mid)) and found[0]["status"] not in LIVE and found,
        10,
        "the new leg to be ended",
    )
    assert leg["status"] in ("canceled", "completed")
    call = emu_call(ctl, leg["sid"])
    created = asked(call, "CreateParticipant")[0]["time"]
    ended = asked(call, "UpdateCall", "Status") + asked(call, "DeleteParticipant")
    assert ended, call["requests"]
    # Ended as soon as its CallSid was known (the create's answer), not later.
    assert ended[0]["time"] - (created + delay) < 2, call["requests"]
    s.wait_final(mid)
    assert ctl.creates(mid) == 1
    assert s.internals(mid)["callSid"] == leg["sid"]
    assert s.log().count(f"{target} was removed") == 1
    assert_no_live_leg(ctl, mid)


def test_a_member_removed_while_ringing_is_cancelled_at_once(ctl: Stack, acct: Team) -> None:
    s = Session(ctl, acct)
    target = number_ending("0002")  # rings for NO_ANSWER_SECONDS, never answers
    mid = s.invite(target)
    s.wait_state(mid, "Ringing")
    call_sid = s.call_sid(mid)
    started = time.monotonic()
    s.remove(mid)
    wait_until(lambda: emu_call(ctl, call_sid)["status"] == "canceled", 5, "the leg cancelled")
    assert time.monotonic() - started < NO_ANSWER_SECONDS / 4
    call = wait_until(
        lambda: "canceled" in call_statuses(c := emu_call(ctl, call_sid)) and c,
        5,
        "the canceled callback to reach us",
    )
    assert asked(call, "UpdateCall", "Status")[0]["params"]["Status"] == "canceled"
    s.wait_final(mid)
    assert f"{target}: the call was canceled" in s.log()
    assert_no_live_leg(ctl, mid)
    assert s.get()["ended"] is False


def test_a_connected_member_removed_leaves_the_conference(ctl: Stack, acct: Team) -> None:
    s = Session(ctl, acct)
    target = random_number()
    mid, call_sid = s.connected(target)
    s.remove(mid)
    assert_removed_once(ctl, call_sid, 10, "the participant to leave")
    s.wait_final(mid)
    assert emu_call(ctl, call_sid)["status"] == "completed"
    assert participant(ctl, s.conference_sid, call_sid) is None
    assert_no_live_leg(ctl, mid)
    # The caller stays: removing a member is not ending the call.
    session = s.get()
    assert session["ended"] is False and s.member(s.caller, session)["callState"] == "Connected"
    assert sum(e == f"{target} was removed" for e in s.log()) == 1


def test_removing_a_final_member_changes_nothing_and_an_unknown_one_is_404(
    ctl: Stack, acct: Team
) -> None:
    s = Session(ctl, acct)
    target = number_ending("0001")  # busy
    mid = s.invite(target)
    s.wait_final(mid)
    before, seq_before = s.get(), s.control_seq()
    s.remove(mid)
    assert s.get() == before and s.control_seq() == seq_before
    response = s.api("DELETE", "/sessions/{sid}/members/nobody")
    assert response.status_code == 404, response.text


# --- hold, mute, resume ----------------------------------------------------------------


def test_hold_mute_and_resume_reach_twilio_and_states_follow_its_callbacks(
    ctl: Stack, acct: Team
) -> None:
    s = Session(ctl, acct)
    agent, agent_sid = s.connected(acct.ada)
    other, other_sid = s.connected(random_number())

    held = s.api("POST", "/sessions/{sid}/hold", acct.ada_key,
                 json={"callSid": agent_sid, "reason": "Transferring"})  # fmt: skip
    assert held.status_code == 200, held.text
    session = held.json()
    assert session["callState"] == "Hold" and session["holdReason"] == "Transferring"
    assert session["heldByUserId"] == acct.ada
    # Asked, not yet done: a member is on hold when Twilio says so, not before.
    assert {s.member(m, session)["callState"] for m in (s.caller, agent, other)} == {"Connected"}

    for mid in (s.caller, other):
        s.wait_state(mid, "Hold")
    for call_sid in (s.caller_sid, other_sid):
        assert held_at_twilio(s, call_sid)
        call = sent(ctl, call_sid, "participant-hold")
        assert len(events(call, "participant-hold")) == 1
        (hold,) = asked(call, "UpdateParticipant", "Hold")
        assert hold["params"]["Hold"] == "true" and hold["params"]["HoldUrl"] == HOLD_MUSIC
    # The holder is not held, and Twilio was not asked to.
    assert not held_at_twilio(s, agent_sid)
    assert s.member(agent)["callState"] == "Connected"
    agent_call = emu_call(ctl, agent_sid)
    assert not events(agent_call, "participant-hold") and not asked(agent_call, "UpdateParticipant")
    s.wait_control_idle()

    # Holding a held session changes nothing: no job, no log line, no new hold.
    before, seq_before = s.get(), s.control_seq()
    again = s.api("POST", "/sessions/{sid}/hold", acct.ada_key, json={"callSid": agent_sid})
    assert again.status_code == 200, again.text
    assert again.json() == before == s.get()
    assert s.control_seq() == seq_before
    held_line = "Ada Agent put the call on hold to transfer it"
    assert s.log().count(held_line) == 1

    # Mute one member: muted once Twilio says so.
    session = s.update(other_sid, muted=True)
    assert s.member(other, session)["muted"] is False
    wait_until(lambda: s.member(other)["muted"] is True, 10, "participant-mute")
    assert participant(ctl, s.conference_sid, other_sid)["muted"] is True
    other_call = sent(ctl, other_sid, "participant-mute")
    assert len(events(other_call, "participant-mute")) == 1
    assert [r["params"] for r in asked(other_call, "UpdateParticipant", "Muted")] == [
        {"Muted": "true"}
    ]
    s.wait_control_idle()
    for call_sid in (s.caller_sid, other_sid):  # still one hold each
        assert len(asked(emu_call(ctl, call_sid), "UpdateParticipant", "Hold")) == 1

    # Resume: everyone the session held comes off hold, once Twilio says so.
    resumed = s.api("PATCH", "/sessions/{sid}", acct.ada_key, json={"callState": "Connected"})
    assert resumed.status_code == 200, resumed.text
    session = resumed.json()
    assert session["callState"] == "Connected" and session["holdReason"] == "None"
    assert session["heldByUserId"] is None
    assert s.member(other, session)["callState"] == "Hold"
    for mid in (s.caller, other):
        s.wait_state(mid, "Connected")
    s.wait_control_idle()
    for call_sid in (s.caller_sid, other_sid):
        assert not held_at_twilio(s, call_sid)
        call = sent(ctl, call_sid, "participant-unhold")
        assert len(events(call, "participant-unhold")) == 1
        assert [r["params"]["Hold"] for r in asked(call, "UpdateParticipant", "Hold")] == [
            "true",
            "false",
        ]
    assert not asked(emu_call(ctl, agent_sid), "UpdateParticipant")
    assert s.member(other)["muted"] is True  # resuming is not unmuting
    log = s.log()
    assert log.count(held_line) == 1 and log.count("Ada Agent took the call off hold") == 1
    assert log.count(f"{s.identity(other)} is on hold") == 1
    assert log.count(f"{s.identity(other)} was muted") == 1


def test_a_member_joining_a_held_session_is_not_held_and_resume_spares_own_holds(
    ctl: Stack, acct: Team
) -> None:
    s = Session(ctl, acct)
    _, agent_sid = s.connected(acct.ada)
    own, own_sid = s.connected(random_number())
    later, later_sid = s.connected(random_number())
    # Held on its own (UpdateConferenceMember) before the session is held.
    s.update(own_sid, hold=True)
    s.wait_state(own, "Hold")
    s.wait_control_idle()

    held = s.api("POST", "/sessions/{sid}/hold", acct.ada_key,
                 json={"callSid": agent_sid, "reason": "Transferring"})  # fmt: skip
    assert held.status_code == 200, held.text
    s.wait_state(s.caller, "Hold")
    s.wait_state(later, "Hold")
    # Held by the session, then asked to be held on its own too: that hold is its own.
    session = s.update(later_sid, hold=True)
    assert s.member(later, session)["callState"] == "Hold"
    # The colleague of a warm transfer joins while the session is held: they must talk.
    colleague, colleague_sid = s.connected(acct.bob)
    s.wait_control_idle()
    assert not held_at_twilio(s, colleague_sid)
    assert s.member(colleague)["callState"] == "Connected"

    resumed = s.api("PATCH", "/sessions/{sid}", acct.ada_key, json={"callState": "Connected"})
    assert resumed.status_code == 200, resumed.text
    s.wait_state(s.caller, "Connected")
    s.wait_control_idle()
    # The members held on their own stay held; the colleague was never touched.
    for mid, call_sid in ((own, own_sid), (later, later_sid)):
        assert held_at_twilio(s, call_sid)
        assert s.member(mid)["callState"] == "Hold"
        call = emu_call(ctl, call_sid)
        assert [r["params"]["Hold"] for r in asked(call, "UpdateParticipant", "Hold")] == ["true"]
        assert not events(call, "participant-unhold")
    colleague_call = emu_call(ctl, colleague_sid)
    assert not asked(colleague_call, "UpdateParticipant")
    assert not events(colleague_call, "participant-hold")
    assert s.member(colleague)["callState"] == "Connected"
    assert not asked(emu_call(ctl, agent_sid), "UpdateParticipant")


# --- the end of the call ---------------------------------------------------------------


def test_the_caller_hanging_up_ends_the_session_and_every_leg(ctl: Stack, acct: Team) -> None:
    s = Session(ctl, acct)
    connected, connected_sid = s.connected(random_number())
    held, held_sid = s.connected(random_number())
    s.update(held_sid, hold=True)
    s.wait_state(held, "Hold")
    ringing = s.invite(number_ending("0002"))
    s.wait_state(ringing, "Ringing")
    ringing_sid = s.call_sid(ringing)
    s.wait_control_idle()

    started = time.monotonic()
    assert ctl.emulator(f"calls/{s.caller_sid}/hangup", "POST").status_code == 200
    session = wait_until(lambda: (x := s.get())["ended"] and x, 10, "the session to end")
    assert session["callState"] == "Disconnected"
    assert session["dateCompleted"] and session["outcome"] == "Completed"
    assert session["wasMissed"] is False
    wait_until(lambda: emu_call(ctl, ringing_sid)["status"] == "canceled", 5, "the ringing leg")
    assert time.monotonic() - started < NO_ANSWER_SECONDS / 4
    for mid in (s.caller, connected, held, ringing):
        s.wait_final(mid)
    assert rest(ctl, f"Conferences/{s.conference_sid}.json").json()["status"] == "completed"
    for call_sid in (s.caller_sid, connected_sid, held_sid):
        assert emu_call(ctl, call_sid)["status"] == "completed"
    for mid in (connected, held, ringing):
        assert_no_live_leg(ctl, mid)
    assert "The caller hung up" in s.log()


def test_end_session_with_members_in_every_state(ctl: Stack, acct: Team) -> None:
    s = Session(ctl, acct)
    connected, connected_sid = s.connected(random_number())
    held, held_sid = s.connected(random_number())
    s.update(held_sid, hold=True)
    s.wait_state(held, "Hold")
    final = s.invite(number_ending("0001"))  # busy
    s.wait_final(final)
    ringing = s.invite(number_ending("0002"))
    s.wait_state(ringing, "Ringing")
    s.wait_control_idle()
    # Being dialled: its create takes 3 s, and the one worker is busy with it meanwhile,
    # so the member invited next waits in the queue, not yet dialled.
    ctl.emulator("faults", "POST", data={"mode": "delay", "seconds": "3", "count": "1"})
    try:
        dialling = s.invite(random_number())
        wait_until(lambda: ctl.creates(dialling) == 1, 10, "the slow create to reach Twilio")
        parked_number = random_number()
        parked = s.invite(parked_number)
        assert jobs.job_id(parked) in dial_queue(ctl.redis).get_job_ids()
        assert "callSid" not in s.internals(dialling)

        ended = s.api("DELETE", "/sessions/{sid}", acct.ada_key)
        assert ended.status_code == 204, ended.text
    finally:
        ctl.emulator("faults", "POST", data={"count": "0"})
    session = s.get()
    assert session["ended"] is True and session["callState"] == "Disconnected"
    assert session["outcome"] == "Ended by Ada Agent" and session["dateCompleted"]

    everyone = (s.caller, connected, held, final, ringing, dialling, parked)
    for mid in everyone:
        s.wait_final(mid)
    s.wait_control_idle()
    for mid in everyone[1:]:
        assert_no_live_leg(ctl, mid)
    assert rest(ctl, f"Conferences/{s.conference_sid}.json").json()["status"] == "completed"
    assert ctl.creates(parked) == 0 and ctl.creates(dialling) == 1
    assert f"Not dialled {parked_number}: the session has ended" in s.log()
    job = Job.fetch(f"dial-{parked}", connection=redis.Redis.from_url(ctl.redis_url))
    assert job.return_value() == "ended"
    for call_sid in (connected_sid, held_sid):
        (leave,) = events(sent(ctl, call_sid, "participant-leave"), "participant-leave")
        assert leave["ReasonParticipantLeft"] == "conference_ended_via_api"

    # Ending an ended session: 204, and nothing changes.
    before, seq_before = s.get(), s.control_seq()
    again = s.api("DELETE", "/sessions/{sid}")
    assert again.status_code == 204, again.text
    assert s.get() == before and s.control_seq() == seq_before
    assert s.log().count("Ada Agent ended the call") == 1


# --- blind transfer ----------------------------------------------------------------------


def test_blind_transfer_holds_the_caller_until_the_destination_connects(
    ctl: Stack, acct: Team
) -> None:
    s = Session(ctl, acct)
    agent, agent_sid = s.connected(acct.ada)
    other, other_sid = s.connected(random_number())
    destination = random_number()
    response = s.api("POST", "/sessions/{sid}/redirect", acct.ada_key,
                     json={"destination": destination})  # fmt: skip
    assert response.status_code == 204, response.text
    target = s.r.hget(keys.session_active(s.sid), destination)
    assert target
    s.wait_state(target, "Connected")
    for mid in (agent, other):
        s.wait_final(mid)
        assert_no_live_leg(ctl, mid)
    wait_until(lambda: events(emu_call(ctl, s.caller_sid), "participant-unhold"), 10, "unhold")
    s.wait_state(s.caller, "Connected")

    caller_call = emu_call(ctl, s.caller_sid)
    (hold,) = events(caller_call, "participant-hold")
    (unhold,) = events(caller_call, "participant-unhold")
    (join,) = events(sent(ctl, s.call_sid(target), "participant-join"), "participant-join")
    leave = "participant-leave"
    leaves = [events(sent(ctl, c, leave), leave)[0] for c in (agent_sid, other_sid)]
    # In Twilio's own order: the others leave and the caller hears hold music before the
    # destination joins; the caller comes off hold once it has.
    assert max(seq(x) for x in leaves) < seq(join) and seq(hold) < seq(join) < seq(unhold)
    assert {x["ReasonParticipantLeft"] for x in leaves} == {"participant_updated_via_api"}
    assert asked(caller_call, "UpdateParticipant", "Hold")[0]["params"]["HoldUrl"] == HOLD_MUSIC
    session = s.get()
    assert session["ended"] is False and session["destination"] == destination
    log = s.log()
    assert f"Ada Agent transferred the call to {destination}" in log
    assert f"Transferred to {destination}" in log


@pytest.mark.parametrize("suffix", ["0001", "0003"], ids=["busy", "failed"])
def test_blind_transfer_that_does_not_connect_leaves_the_caller_in_the_session(
    ctl: Stack, acct: Team, suffix: str
) -> None:
    s = Session(ctl, acct)
    agent, _ = s.connected(acct.ada)
    destination = number_ending(suffix)
    response = s.api("POST", "/sessions/{sid}/redirect", json={"destination": destination})
    assert response.status_code == 204, response.text
    target = s.r.hget(keys.session_active(s.sid), destination)
    s.wait_final(target)
    s.wait_final(agent)
    wait_until(lambda: events(emu_call(ctl, s.caller_sid), "participant-unhold"), 10, "unhold")
    s.wait_state(s.caller, "Connected")
    s.wait_control_idle()
    caller_call = emu_call(ctl, s.caller_sid)
    assert len(events(caller_call, "participant-hold")) == 1
    assert not held_at_twilio(s, s.caller_sid)
    assert emu_call(ctl, s.caller_sid)["status"] == "in-progress"
    session = s.get()
    assert session["ended"] is False and session["callState"] == "Connected"
    assert f"{destination} did not connect; the caller stays in the session" in s.log()
    assert not [e for e in s.log() if e.startswith("Transferred to")]


# --- Twilio faults on control requests, and a worker killed ------------------------------


CONTROL_FAULTS = [
    pytest.param("participant-delete", "503", "remove-connected", id="delete-503"),
    pytest.param("calls-update", "429", "remove-ringing", id="cancel-429"),
    pytest.param("participant-update", "500", "hold", id="hold-500"),
    pytest.param("conference-update", "503", "end", id="end-503"),
]


def test_a_fault_armed_for_one_operation_hits_only_that_operation(ctl: Stack, acct: Team) -> None:
    """The emulator's faults for requests other than creates (`operation`)."""
    refused = ctl.emulator("faults", "POST", data={"operation": "calls-create"})
    assert refused.status_code == 400, refused.text
    s = Session(ctl, acct)
    served = ctl.emulator("faults").json()["served"]
    armed = ctl.emulator("faults", "POST", data={"operation": "participant-update"})
    assert armed.json() == {"operation": "participant-update", "remaining": 1, "served": served}
    try:
        _, call_sid = s.connected(random_number())  # a create: not for this fault
        s.wait_control_idle()
        assert ctl.emulator("faults").json()["remaining"] == 1
        path = f"Conferences/{s.conference_sid}/Participants/{call_sid}.json"
        faulted = rest(ctl, path, "POST", data={"Muted": "true"})
        assert faulted.status_code == 503 and faulted.json()["code"] == 20503
        assert participant(ctl, s.conference_sid, call_sid)["muted"] is False
        assert rest(ctl, path, "POST", data={"Muted": "true"}).status_code == 200
        assert participant(ctl, s.conference_sid, call_sid)["muted"] is True
        assert ctl.emulator("faults").json()["served"] == served + 1
        # A reset of a hang-up: no answer, and the call is still up.
        ctl.emulator("faults", "POST", data={"operation": "calls-update", "mode": "reset"})
        with pytest.raises(httpx.TransportError):
            rest(ctl, f"Calls/{call_sid}.json", "POST", data={"Status": "completed"})
        assert emu_call(ctl, call_sid)["status"] == "in-progress"
        assert [r["operation"] for r in emu_call(ctl, call_sid)["requests"]][-1] == "UpdateCall"
    finally:
        ctl.emulator("faults", "POST", data={"count": "0"})


@pytest.mark.parametrize(("operation", "status", "action"), CONTROL_FAULTS)
def test_twilio_failing_a_control_request_is_retried_with_backoff_and_done_once(
    ctl: Stack, acct: Team, operation: str, status: str, action: str
) -> None:
    s = Session(ctl, acct)
    number = number_ending("0002") if action == "remove-ringing" else random_number()
    mid = s.invite(number)
    s.wait_state(mid, "Ringing" if action == "remove-ringing" else "Connected")
    call_sid = s.call_sid(mid)
    s.wait_control_idle()
    armed = ctl.emulator(
        "faults", "POST", data={"operation": operation, "status": status, "count": "3"}
    )
    assert armed.status_code == 200, armed.text
    served = armed.json()["served"]
    try:
        if action == "hold":
            s.update(call_sid, hold=True)
        elif action == "end":
            assert s.api("DELETE", "/sessions/{sid}").status_code == 204
        else:
            s.remove(mid)
        s.wait_control_idle(20)
        assert ctl.emulator("faults").json()["served"] == served + 3
    finally:
        ctl.emulator("faults", "POST", data={"count": "0"})
    call = emu_call(ctl, call_sid)
    if action == "hold":
        s.wait_state(mid, "Hold")
        tries = asked(call, "UpdateParticipant", "Hold")
        assert len(events(sent(ctl, call_sid, "participant-hold"), "participant-hold")) == 1
    elif action == "end":
        s.wait_final(mid)
        tries = []
        assert rest(ctl, f"Conferences/{s.conference_sid}.json").json()["status"] == "completed"
        (leave,) = events(sent(ctl, call_sid, "participant-leave"), "participant-leave")
        assert leave["ReasonParticipantLeft"] == "conference_ended_via_api"
    else:
        s.wait_final(mid)
        assert_no_live_leg(ctl, mid)
        if action == "remove-ringing":
            tries = asked(call, "UpdateCall", "Status")
            assert emu_call(ctl, call_sid)["status"] == "canceled"
        else:
            tries = asked(call, "DeleteParticipant")
            (leave,) = events(sent(ctl, call_sid, "participant-leave"), "participant-leave")
            assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    if tries:
        # Three refused, the fourth taken: no storm, and not at once. (The control job
        # retries after 0, 1 and 2 s; RQ schedules to the whole second, so a 1 s wait can
        # be anything up to 2 s, and the three waits together are at least 1 s.)
        assert len(tries) == 4, tries
        assert tries[-1]["time"] - tries[0]["time"] >= 1.0, tries
    assert not [e for e in s.log() if e.startswith("Twilio did not take")]


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, for a test that kills its worker."""
    with control_stack(tmp_path) as stack:
        yield stack


def test_a_worker_killed_with_a_control_job_queued_loses_nothing(lone: Stack) -> None:
    s = Session(lone, lone.online(new_team(lone.redis_url)))
    member, member_sid = s.connected(random_number())
    s.wait_control_idle()
    # Keep the one worker busy in a slow create, so the removal's job waits queued.
    lone.emulator("faults", "POST", data={"mode": "delay", "seconds": "4", "count": "1"})
    busy = s.invite(random_number())
    wait_until(lambda: lone.creates(busy) == 1, 10, "the slow create to reach Twilio")
    s.remove(member)
    queued = control_queue(lone.redis).get_job_ids()
    assert any(j.startswith(f"ctl-{s.sid}-") for j in queued), queued
    lone.processes["worker"].kill()
    assert participant(lone, s.conference_sid, member_sid) is not None
    lone.start("worker", "-m", "orchestrator", "worker")
    assert_removed_once(lone, member_sid, 15, "the removal to happen after the restart")
    s.wait_final(member)
    assert_no_live_leg(lone, member)


def test_a_worker_killed_with_a_control_job_running_loses_nothing(lone: Stack) -> None:
    s = Session(lone, lone.online(new_team(lone.redis_url)))
    first, first_sid = s.connected(random_number())
    second, second_sid = s.connected(random_number())
    s.wait_control_idle()
    # One control job holds everyone, the caller first; Twilio answers that one slowly,
    # and the worker dies while it waits.
    lone.emulator(
        "faults",
        "POST",
        data={"operation": "participant-update", "mode": "delay", "seconds": "5"},
    )
    held = s.api("POST", "/sessions/{sid}/hold")
    assert held.status_code == 200, held.text
    wait_until(lambda: asked(emu_call(lone, s.caller_sid), "UpdateParticipant"), 10, "a hold")
    lone.processes["worker"].kill()
    assert not held_at_twilio(s, first_sid) and not held_at_twilio(s, second_sid)
    lone.start("worker", "-m", "orchestrator", "worker")
    for mid in (first, second):
        s.wait_state(mid, "Hold", timeout=40)
    assert held_at_twilio(s, first_sid) and held_at_twilio(s, second_sid)
    for call_sid in (first_sid, second_sid):
        assert len(asked(emu_call(lone, call_sid), "UpdateParticipant", "Hold")) == 1
