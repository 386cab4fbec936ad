"""Live events (docs/events.md) through the real processes: every change of a session reaches
its subscribers as the SessionInfo GET would have answered then, in order, once;
a client resumes from Last-Event-ID without losing any; a slow one cannot hold
anybody up."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator

import pytest

from orchestrator import keys
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Account, new_account, random_number
from tests.support.cli import cli
from tests.support.sse import EventStream
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import post


def events_url(stack: Stack, sid: str | None = None) -> str:
    return f"{stack.base_url}/sessions/{sid}/events" if sid else f"{stack.base_url}/sessions/events"


def incoming(stack: Stack, account: Account) -> str:
    """A customer calls the account's number (through the emulator): the session's id."""
    return stack.incoming_call(random_number(), account.number)["conferenceName"]


def get_session(stack: Stack, account: Account, sid: str) -> dict:
    response = stack.client(account.key).get(f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def streams() -> Iterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_stream(opened: list[EventStream], *args, **kwargs) -> EventStream:
    stream = EventStream(*args, **kwargs)
    opened.append(stream)
    return stream


def watched_call(
    stack: Stack, account: Account, streams: list[EventStream]
) -> tuple[str, EventStream]:
    """A customer calls in, and the session's own event stream is open: (its id, the stream)."""
    sid = incoming(stack, account)
    return sid, open_stream(streams, events_url(stack, sid), account.key).connected()


def test_a_call_is_seen_live_from_ring_to_hang_up(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    stack.user_online(account)
    everything = open_stream(streams, events_url(stack), account.key).connected()
    sid = incoming(stack, account)
    one = open_stream(streams, events_url(stack, sid), account.key).connected()
    assert (
        stack.client(account.key)
        .post(f"/sessions/{sid}/members", json={"memberToAdd": account.user_id})
        .status_code
        == 200
    )
    # The emulator connects the caller and then the agent: the session is answered.
    everything.wait(lambda s: s.named("SessionAnswered", sid), what="SessionAnswered")
    assert stack.client(account.key).delete(f"/sessions/{sid}").status_code == 204
    everything.wait(lambda s: s.named("SessionDisconnected", sid), what="SessionDisconnected")
    # The control job hangs up the agent's leg; its callback is the last change.
    final = wait_until(
        lambda: (
            (s := get_session(stack, account, sid))
            and all(m["callState"] == "None" for m in s["members"])
            and s
        ),
        15,
        "every leg to end",
    )
    everything.wait(lambda s: s.changes(sid)[-1].session == final, what="the final state")
    one.wait(lambda s: s.changes() and s.changes()[-1].session == final, what="one session")

    changes = everything.changes(sid)
    first = changes[0].session
    assert first["callState"] == "Ringing" and first["members"][0]["role"] == "Caller"
    # The session's own stream holds exactly its events since it opened, in order.
    ids = [m.id for m in changes]
    assert [m.id for m in one.changes()] == ids[ids.index(one.changes()[0].id) :]
    assert {m.data["sessionId"] for m in one.messages} == {sid}
    # ActiveSessionsChanged when the session starts and when it ends; SessionHeld never.
    starts = everything.named("ActiveSessionsChanged", sid)
    assert [m.session["ended"] for m in starts] == [False, True]
    assert not everything.named("SessionHeld", sid)
    # The specific events carry no id and come just before their SessionInfoChanged.
    names = [m.name for m in everything.messages if m.data["sessionId"] == sid]
    for i, name in enumerate(names):
        if name != "SessionInfoChanged":
            assert "SessionInfoChanged" in names[i + 1 :]
    assert all(m.id is None for m in everything.messages if m.name != "SessionInfoChanged")
    agent = next(m for m in final["members"] if m["role"] == "Agent")
    states = [
        next(x["callState"] for x in m.session["members"] if x["identity"] == agent["identity"])
        for m in changes
        if len(m.session["members"]) > 1
    ]
    assert dedupe(states) == ["None", "Ringing", "Connected", "None"]


def dedupe(values: list) -> list:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def test_hold_is_seen_as_session_held(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid, stream = watched_call(stack, account, streams)
    client = stack.client(account.key)
    assert client.post(f"/sessions/{sid}/hold", json={}).status_code == 200
    held = stream.wait(lambda s: s.named("SessionHeld"), what="SessionHeld")
    assert held[0].session["callState"] == "Hold"
    assert client.patch(f"/sessions/{sid}", json={"callState": "Connected"}).status_code == 200
    stream.wait(lambda s: s.changes()[-1].session["callState"] == "Connected", what="resumed")
    assert len(stream.named("SessionHeld")) == 1
    # A note is a change too, with the note in it.
    assert client.patch(f"/sessions/{sid}", json={"consoleData": "vip"}).status_code == 200
    stream.wait(lambda s: s.changes()[-1].session["consoleData"] == "vip", what="the note")
    # Writing the same note again changes nothing: no event.
    marker = stack.client(account.key).patch(f"/sessions/{sid}", json={"queueState": "None"})
    assert marker.status_code == 200
    assert client.patch(f"/sessions/{sid}", json={"consoleData": "vip"}).status_code == 200
    assert client.patch(f"/sessions/{sid}", json={"consoleData": "vip!"}).status_code == 200
    stream.wait(lambda s: s.changes()[-1].session["consoleData"] == "vip!", what="the last note")
    assert_every_event_is_a_change(stream.changes())


def assert_every_event_is_a_change(changes: list) -> None:
    """Each event's SessionInfo differs from the one before: no event for a no-op (the
    caller's own hold callbacks may come at any time, so counting would not do)."""
    sessions = [m.session for m in changes]
    for before, after in itertools.pairwise(sessions):
        assert before != after


def test_resume_from_last_event_id_loses_nothing(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    steady = open_stream(streams, events_url(stack), account.key).connected()
    first = open_stream(streams, events_url(stack), account.key).connected()
    sids = [incoming(stack, account)]
    first.wait(lambda s: s.changes(sids[0]), what="a first event")
    first.close()
    resume_from = first.last_event_id
    assert resume_from == first.changes()[-1].id
    seen = {m.id for m in first.changes()}
    # Changes while it is away: a second call, and the first call's member invited.
    sids.append(incoming(stack, account))
    client = stack.client(account.key)
    assert (
        client.post(
            f"/sessions/{sids[0]}/members", json={"memberToAdd": random_number()}
        ).status_code
        == 200
    )
    steady.wait(lambda s: len(s.changes()) >= len(seen) + 3, what="changes while away")
    again = open_stream(streams, events_url(stack), account.key, last_event_id=resume_from)
    again.connected()
    # Everything the steady subscriber saw after resume_from, then the live ones, once each.
    assert client.patch(f"/sessions/{sids[1]}", json={"consoleData": "after"}).status_code == 200
    steady.wait(lambda s: s.changes()[-1].session.get("consoleData") == "after", what="live")

    def missed() -> list:  # the invited member's call goes on meanwhile: both lists grow
        return [(m.id, m.data) for m in steady.changes() if m.id not in seen]

    again.wait(lambda s: [(m.id, m.data) for m in s.changes()] == missed(), what="resumed")
    assert len(missed()) >= 4
    assert not again.named("Reset")


def test_resume_from_an_event_no_longer_kept_says_reset(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid = incoming(stack, account)
    wait_until(lambda: stack.redis.xlen(keys.account_events(account.id)), 5, "an event")
    # An id older than anything the stream keeps (the client was away too long).
    stream = open_stream(streams, events_url(stack), account.key, last_event_id="1-0").connected()
    stream.wait(lambda s: s.changes(sid), what="the events still kept")
    assert stream.messages[0].name == "Reset"  # before them


def test_streams_need_the_accounts_key(
    stack: Stack, account: Account, redis_url: str, streams: list[EventStream]
) -> None:
    other = new_account(redis_url)
    sid = incoming(stack, account)
    for url in (events_url(stack), events_url(stack, sid)):
        assert net.get(url).status_code == 401
        bad = net.get(url, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["responseStatus"]["message"]
    foreign = net.get(events_url(stack, sid), headers={"Authorization": f"Bearer {other.key}"})
    assert foreign.status_code == 404, foreign.text
    assert "does not exist" in foreign.json()["responseStatus"]["message"]
    assert (
        net.get(
            events_url(stack, "ses_nope"), headers={"Authorization": f"Bearer {account.key}"}
        ).status_code
        == 404
    )
    bad_id = net.get(
        events_url(stack), headers={"Authorization": f"Bearer {account.key}", "Last-Event-ID": "x"}
    )
    assert bad_id.status_code == 400 and "Last-Event-ID" in bad_id.text
    # Another account's stream never carries this account's changes.
    theirs = open_stream(streams, events_url(stack), other.key).connected()
    ours = open_stream(streams, events_url(stack), account.key).connected()
    stack.client(account.key).patch(f"/sessions/{sid}", json={"consoleData": "private"})
    ours.wait(lambda s: s.changes(sid), what="our event")
    their_sid = incoming(stack, other)
    theirs.wait(lambda s: s.changes(their_sid), what="their event")
    assert {m.data["sessionId"] for m in theirs.messages} == {their_sid}


def test_no_event_for_a_callback_that_changes_nothing(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid, stream = watched_call(stack, account, streams)
    caller_sid = get_session(stack, account, sid)["callSid"]
    join = {"FriendlyName": sid, "CallSid": caller_sid, "ConferenceSid": "CF" + "b" * 32,
            "StatusCallbackEvent": "participant-mute", "SequenceNumber": "900"}  # fmt: skip
    assert post(stack, "/twilio/conference-status", join).status_code == 204
    stream.wait(
        lambda s: s.changes() and s.changes()[-1].session["members"][0]["muted"], what="mute"
    )
    count = len(stream.changes())
    for seq in ("901", "902"):  # muted again, then a stale unmute: nothing changes
        again = {**join, "SequenceNumber": seq}
        assert post(stack, "/twilio/conference-status", again).status_code == 204
    stale = {**join, "StatusCallbackEvent": "participant-unmute", "SequenceNumber": "800"}
    assert post(stack, "/twilio/conference-status", stale).status_code == 204
    # A change after them: its event is the next one.
    assert (
        stack.client(account.key).patch(f"/sessions/{sid}", json={"consoleData": "x"}).status_code
        == 200
    )
    stream.wait(lambda s: s.changes()[-1].session["consoleData"] == "x", what="the marker")
    assert_every_event_is_a_change(stream.changes())
    muted = [m for m in stream.changes()[count:] if m.session["members"][0]["muted"]]
    assert [m.session["consoleData"] for m in muted] == ["x"]  # the no-ops made none


# --- a slow subscriber, heartbeats, revoked keys: a stack of their own


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    env = {"EVENT_BUFFER": "5", "EVENT_HEARTBEAT_SECONDS": "0.3"}
    with running_stack(tmp_path_factory.mktemp("tight"), redis_url, env=env) as stack:
        yield stack


def test_idle_streams_get_keep_alive_comments(
    tight: Stack, account: Account, streams: list[EventStream]
) -> None:
    stream = open_stream(streams, events_url(tight), account.key).connected()
    stream.wait(lambda s: s.comments.count("keep-alive") >= 2, what="keep-alive comments")
    assert not stream.messages


def test_a_revoked_key_ends_its_stream(
    tight: Stack, account: Account, streams: list[EventStream]
) -> None:
    stream = open_stream(streams, events_url(tight), account.key).connected()
    key_id = tight.redis.hget(keys.api_key(_digest(account.key)), "id")
    revoked = cli("keys", "revoke", key_id, env=tight.env)
    assert revoked.returncode == 0, revoked.stderr
    assert stream.ended.wait(10)
    assert stream.messages[-1].name == "Dropped"
    assert "no longer valid" in stream.messages[-1].data["message"]


def _digest(key: str) -> str:
    from orchestrator import apikeys

    return apikeys.digest(key)


def test_a_subscriber_that_stops_reading_holds_nobody_up(
    tight: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid = incoming(tight, account)
    healthy = open_stream(streams, events_url(tight, sid), account.key).connected()
    # A client that asks for the stream and then reads nothing (a tiny receive buffer,
    # so the server's writes back up at once).
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    host, port = tight.base_url.removeprefix("http://").split(":")
    stalled.connect((host, int(port)))
    stalled.sendall(
        f"GET /sessions/{sid}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {account.key}\r\n\r\n".encode()
    )
    wait_until(lambda: _gauge(tight, "orchestrator_event_subscribers") == 2, 10, "two subscribers")
    client = tight.client(account.key)
    # More than the kernel buffers on loopback hold (4 MiB), in notes near their 16 KiB limit.
    notes = [f"note {i} " + "x" * 15000 for i in range(320)]
    for note in notes:  # every change is answered at once, the stalled reader or not
        assert client.patch(f"/sessions/{sid}", json={"consoleData": note}).status_code == 200
    healthy.wait(lambda s: s.changes()[-1].session["consoleData"] == notes[-1], what="all")
    assert [m.session["consoleData"] for m in healthy.changes()][-len(notes) :] == notes
    wait_until(lambda: _gauge(tight, "orchestrator_event_subscribers") == 1, 10, "the drop")
    assert _gauge(tight, "orchestrator_event_subscribers_dropped_total") >= 1

    # Now it reads: what it was sent, then Dropped, then the end; it resumes from there.
    stalled.settimeout(10)
    raw = b""
    while chunk := stalled.recv(65536):
        raw += chunk
        if b"event: Dropped" in raw and raw.endswith(b"\r\n\r\n"):
            break
    stalled.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert b"event: Dropped" in body and b"resume with Last-Event-ID" in body
    ids = [line[4:].decode() for line in _dechunk(body).split(b"\n") if line.startswith(b"id: ")]
    resumed = open_stream(streams, events_url(tight, sid), account.key, last_event_id=ids[-1])
    resumed.connected().wait(lambda s: len(ids) + len(s.changes()) >= len(healthy.changes()))
    assert ids + [m.id for m in resumed.changes()] == [m.id for m in healthy.changes()]


def _dechunk(body: bytes) -> bytes:
    """The HTTP/1.1 chunked body's data (enough for the test: whole chunks only)."""
    out, rest = b"", body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        if not size.strip():
            continue
        n = int(size, 16)
        if n == 0 or len(rest) < n:
            out += rest[:n] if n else b""
            break
        out, rest = out + rest[:n], rest[n + 2 :]
    return out


def _gauge(stack: Stack, name: str) -> float:
    text = net.get(f"{stack.base_url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_event_data_is_what_get_answers(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid, stream = watched_call(stack, account, streams)
    client = stack.client(account.key)
    assert (
        client.patch(f"/sessions/{sid}", json={"consoleData": json.dumps({"a": "é"})}).status_code
        == 200
    )
    now = get_session(stack, account, sid)
    stream.wait(lambda s: s.changes() and s.changes()[-1].session == now, what="GET's answer")


def test_stopping_the_web_process_ends_its_streams_first(
    tmp_path, redis_url: str, account: Account, streams: list[EventStream]
) -> None:
    """Else uvicorn would wait out its grace period for streams that never end, then cut them."""
    with running_stack(tmp_path, redis_url) as stack:
        stream = open_stream(streams, events_url(stack), account.key).connected()
        stack.processes["web"].stop()
        assert stream.ended.wait(10)
        assert stream.messages[-1].name == "Dropped"
        assert "reconnect with Last-Event-ID" in stream.messages[-1].data["message"]
        log = stack.processes["web"].log()
        assert "graceful shutdown exceeded" not in log, log


def test_metrics_count_subscribers_and_what_they_were_sent(
    stack: Stack, account: Account, streams: list[EventStream]
) -> None:
    sid = incoming(stack, account)
    wait_until(lambda: _gauge(stack, "orchestrator_event_subscribers") == 0, 10, "no subscribers")
    before = _gauge(stack, "orchestrator_events_sent_total")
    a = open_stream(streams, events_url(stack), account.key).connected()
    b = open_stream(streams, events_url(stack, sid), account.key).connected()
    assert _gauge(stack, "orchestrator_event_subscribers") == 2
    client = stack.client(account.key)
    for note in ("one", "two", "three"):
        assert client.patch(f"/sessions/{sid}", json={"consoleData": note}).status_code == 200
    for stream in (a, b):
        stream.wait(lambda s: s.changes() and s.changes()[-1].session["consoleData"] == "three")
    # (A late callback of the caller's may still be on its way: wait for the two to agree.)
    wait_until(
        lambda: (
            _gauge(stack, "orchestrator_events_sent_total") - before
            == len(a.changes()) + len(b.changes())
        ),
        10,
        "events sent = events received",
    )
    assert len(a.changes()) >= 3
    a.close()
    b.close()
    wait_until(lambda: _gauge(stack, "orchestrator_event_subscribers") == 0, 10, "both gone")
