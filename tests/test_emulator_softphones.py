"""Agents' softphones in the emulator: registering with an Access Token, being rung at
``client:<identity>``, and placing calls through the TwiML App the token names.

Tokens are minted with the ``twilio`` library, as the service mints them, with keys and
TwiML Apps created through the emulator's own REST API; the voice app is the harness's
webhook receiver, which checks every request's ``X-Twilio-Signature`` with Twilio's
``RequestValidator``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VideoGrant, VoiceGrant
from twilio.rest import Client

from orchestrator.launch import wait_until
from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    EmuHooks,
    emu_dial,
    emu_get,
    emu_register_softphone,
    emu_softphone_call,
    emu_wait_status,
)

pytest_plugins = ("tests.support.emulator",)

CONFERENCE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Calling.</Say><Dial>'
    '<Conference statusCallback="{callback}" statusCallbackEvent="start end join leave"'
    ' participantLabel="agent" endConferenceOnExit="true">{name}</Conference></Dial></Response>'
)


class Key:
    """An API key made through the emulator's Keys API: what tokens are signed with."""

    def __init__(self, client: Client) -> None:
        created = client.api.v2010.account.new_keys.create(friendly_name="softphones")
        self.sid: str = created.sid
        self.secret: str = created.secret

    def token(
        self,
        identity: str,
        *,
        account: str = ACCOUNT_SID,
        secret: str | None = None,
        issuer: str | None = None,
        ttl: int = 3600,
        application_sid: str | None = None,
        params: dict[str, str] | None = None,
        incoming: bool = True,
        voice: bool = True,
    ) -> str:
        token = AccessToken(
            account, issuer or self.sid, secret or self.secret, identity=identity, ttl=ttl
        )
        if voice:
            token.add_grant(
                VoiceGrant(
                    outgoing_application_sid=application_sid,
                    outgoing_application_params=params,
                    incoming_allow=incoming,
                )
            )
        else:
            token.add_grant(VideoGrant(room="not-voice"))
        return token.to_jwt()


@pytest.fixture
def key(emu_client: Client) -> Key:
    return Key(emu_client)


def register(emu_url: str, token: str, answer: str | None = None) -> httpx.Response:
    data = {"AccessToken": token}
    if answer is not None:
        data["Answer"] = answer
    return net.post(f"{emu_url}/_emulator/softphones", data=data, timeout=5)


def place(emu_url: str, identity: str, **params: str) -> httpx.Response:
    return net.post(f"{emu_url}/_emulator/softphones/{identity}/calls", data=params, timeout=10)


def final_events(emu_hooks: EmuHooks, call_sid: str) -> list[str]:
    """The call-progress statuses one dialled call reported, once it reported its last."""
    return wait_until(
        lambda: (
            (
                events := [
                    h["CallStatus"]
                    for h in emu_hooks.for_call(call_sid)
                    if "CallStatus" in h.params
                ]
            )
            and events[-1] in {"completed", "busy", "no-answer", "failed", "canceled"}
            and events
        ),
        what=f"{call_sid} to end",
    )


# ---------------------------------------------------------------------------- registration


def test_a_softphone_registers_lists_replaces_and_unregisters(key: Key, emu_url: str) -> None:
    token = key.token("ada_1", application_sid="AP" + "0" * 32)
    response = register(emu_url, token)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "identity": "ada_1",
        "answer": "answer",
        "expires": body["expires"],
        "applicationSid": "AP" + "0" * 32,
        "incomingAllow": True,
    }
    assert 3590 <= body["expires"] - time.time() <= 3600

    replaced = register(emu_url, key.token("ada_1", incoming=False), answer="decline")
    assert replaced.status_code == 201
    assert replaced.json()["applicationSid"] is None
    listing = emu_get(emu_url, "softphones").json()["softphones"]
    assert [(p["identity"], p["answer"], p["incomingAllow"]) for p in listing] == [
        ("ada_1", "decline", False)
    ]

    assert net.request("DELETE", f"{emu_url}/_emulator/softphones/ada_1").status_code == 200
    assert emu_get(emu_url, "softphones").json() == {"softphones": []}
    gone = net.request("DELETE", f"{emu_url}/_emulator/softphones/ada_1")
    assert gone.status_code == 404 and "ada_1" in gone.json()["message"]

    emu_register_softphone(emu_url, token)
    assert net.post(f"{emu_url}/_emulator/reset").status_code == 200
    assert emu_get(emu_url, "softphones").json() == {"softphones": []}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _signed(header: dict[str, Any], key: Key) -> str:
    """A valid voice token made by hand with ``header``: what the twilio library never mints."""
    payload = {
        "iss": key.sid,
        "sub": ACCOUNT_SID,
        "exp": int(time.time()) + 600,
        "grants": {"identity": "ada_1", "voice": {}},
    }
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    digest = hmac.new(key.secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def _tampered(token: str, **payload: Any) -> str:
    """``token`` with its payload changed and its signature kept."""
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(payload)
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not a jwt", 401, 20101),
        ("no twilio content type", 401, 20102),
        ("not HS256", 401, 20102),
        ("not yet valid", 401, 20105),
        ("wrong secret", 401, 20107),
        ("tampered payload", 401, 20107),
        ("unknown key", 401, 20103),
        ("deleted key", 401, 20103),
        ("other account", 401, 20103),
        ("expired", 401, 20104),
        ("longer than 24 h", 401, 20157),
        ("no voice grant", 403, 20106),
    ],
)
def test_a_token_twilio_would_refuse_is_refused(
    key: Key, emu_client: Client, emu_url: str, case: str, status: int, code: int
) -> None:
    tokens = {
        "not a jwt": lambda: "not-a-token",
        "no twilio content type": lambda: _signed({"alg": "HS256", "typ": "JWT"}, key),
        "not HS256": lambda: _signed({"alg": "none", "cty": "twilio-fpa;v=1"}, key),
        "not yet valid": lambda: AccessToken(
            ACCOUNT_SID, key.sid, key.secret, identity="ada_1", nbf=int(time.time()) + 600
        ).to_jwt(),
        "wrong secret": lambda: key.token("ada_1", secret="x" * 32),
        "tampered payload": lambda: _tampered(key.token("ada_1"), grants={"identity": "eve"}),
        "unknown key": lambda: key.token("ada_1", issuer="SK" + "f" * 32),
        "deleted key": lambda: key.token("ada_1"),
        "other account": lambda: key.token("ada_1", account="AC" + "0" * 32),
        "expired": lambda: key.token("ada_1", ttl=-60),
        "longer than 24 h": lambda: key.token("ada_1", ttl=24 * 3600 + 60),
        "no voice grant": lambda: key.token("ada_1", voice=False),
    }
    token = tokens[case]()
    if case == "deleted key":
        emu_client.api.v2010.account.keys(key.sid).delete()
    response = register(emu_url, token)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert emu_get(emu_url, "softphones").json() == {"softphones": []}


def test_registration_needs_a_token_and_a_known_answer(key: Key, emu_url: str) -> None:
    missing = net.post(f"{emu_url}/_emulator/softphones", data={}, timeout=5)
    assert missing.status_code == 400 and "AccessToken" in missing.json()["message"]
    odd = register(emu_url, key.token("ada_1"), answer="maybe")
    assert odd.status_code == 400 and "decline" in odd.json()["message"]
    # The hand-made token of the header cases, with Twilio's header, is a good one.
    good = register(emu_url, _signed({"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}, key))
    assert good.status_code == 201, good.text


# ---------------------------------------------------------------------------- ringing


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, ["initiated", "ringing", "in-progress"]),
        ("decline", ["initiated", "ringing", "busy"]),
        ("ignore", ["initiated", "ringing", "no-answer"]),
    ],
)
def test_a_registered_softphone_answers_declines_or_ignores(
    key: Key,
    emu_client: Client,
    emu_hooks: EmuHooks,
    emu_url: str,
    answer: str | None,
    expected: list[str],
) -> None:
    emu_register_softphone(emu_url, key.token("bob_2"), answer or "answer")
    leg = emu_dial(emu_client, emu_hooks, f"room-{answer}", "bob", "client:bob_2")
    emu_wait_status(emu_url, leg.call_sid, expected[-1])
    if answer is None:
        emu_hooks.wait_event("participant-join", leg.call_sid)
        return
    assert final_events(emu_hooks, leg.call_sid) == expected
    leave = emu_hooks.wait_event("participant-leave", leg.call_sid)
    assert leave["ParticipantCallStatus"] == expected[-1]


@pytest.mark.parametrize("case", ["unregistered", "incoming not allowed", "expired"])
def test_a_client_nobody_can_answer_rings_unanswered(
    key: Key, emu_client: Client, emu_hooks: EmuHooks, emu_url: str, case: str
) -> None:
    if case == "incoming not allowed":
        emu_register_softphone(emu_url, key.token("cy_3", incoming=False))
    if case == "expired":
        expires = emu_register_softphone(emu_url, key.token("cy_3", ttl=2))["expires"]
        wait_until(lambda: time.time() > expires + 0.01, timeout=5, what="the token to expire")
    started = time.monotonic()
    leg = emu_dial(emu_client, emu_hooks, f"room-{case[:4]}", "cy", "client:cy_3")
    assert final_events(emu_hooks, leg.call_sid) == ["initiated", "ringing", "no-answer"]
    assert time.monotonic() - started >= 0.2  # it rang for no_answer_seconds first


# ---------------------------------------------------------------------------- placing calls


def _voice_app(emu_client: Client, emu_hooks: EmuHooks, fragment: str = "", **settings: str) -> str:
    app = emu_client.api.v2010.account.applications.create(
        friendly_name="agents", voice_url=emu_hooks.url("/voice?app=agents") + fragment, **settings
    )
    return app.sid


def test_a_placed_call_asks_the_app_signed_and_joins_its_conference(
    key: Key, emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    app_sid = _voice_app(emu_client, emu_hooks, "#rc=2&rp=5xx")
    callback = emu_hooks.url("/conference-status")
    emu_hooks.serve("/voice", 200, CONFERENCE_TWIML.format(callback=callback, name="sess-out"))
    token = key.token("dee_4", application_sid=app_sid, params={"team": "blue"})
    emu_register_softphone(emu_url, token)

    # A custom parameter named like one of Twilio's does not override it.
    response = emu_softphone_call(
        emu_url, "dee_4", "+14155550142", callerId="+15005550006", From="+14155550666"
    )
    assert response.status_code == 200, response.text
    placed = response.json()
    assert placed["status"] == "in-progress"
    assert placed["conferenceName"] == "sess-out"
    assert placed["conferenceSid"].startswith("CF")
    assert placed["said"] == ["Calling."]

    voice = emu_hooks.all()[0]
    assert voice.valid  # RequestValidator(auth token) accepts the signature
    assert voice.path.endswith("/voice") and voice.query == {"app": "agents"}
    assert voice.params == {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "ApplicationSid": app_sid,
        "CallSid": placed["callSid"],
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "client:dee_4",
        "Caller": "client:dee_4",
        "To": "+14155550142",
        "Called": "+14155550142",
        "callerId": "+15005550006",
        "team": "blue",  # the token's outgoing params
    }
    join = emu_hooks.wait_event("participant-join", placed["callSid"])
    assert join["ParticipantLabel"] == "agent"

    # A live call like any other: listed, and the agent's hang-up ends the conference.
    call = emu_client.calls(placed["callSid"]).fetch()
    assert (call.direction, call._from, call.to, call.status) == (
        "inbound",
        "client:dee_4",
        "+14155550142",
        "in-progress",
    )
    assert emu_get(emu_url, f"calls/{placed['callSid']}").json()["said"] == ["Calling."]
    member = emu_dial(emu_client, emu_hooks, "sess-out", "callee", "+14155550142")
    emu_hooks.wait_event("participant-join", member.call_sid)
    net.post(f"{emu_url}/_emulator/calls/{placed['callSid']}/hangup")
    leave = emu_hooks.wait_event("participant-leave", placed["callSid"])
    assert leave["ReasonParticipantLeft"] == "participant_hung_up"
    end = emu_hooks.wait_event("conference-end")
    assert end["CallSidEndingConference"] == placed["callSid"]
    emu_wait_status(emu_url, member.call_sid, "completed")
    assert emu_client.calls(placed["callSid"]).fetch().status == "completed"


@pytest.mark.parametrize(
    ("twiml", "status", "said"),
    [
        ("<Say>Not allowed.</Say><Hangup/><Say>never</Say>", "completed", ["Not allowed."]),
        ("<Say>Goodbye.</Say>", "completed", ["Goodbye."]),
        ("<Reject/>", "no-answer", []),
        ('<Reject reason="busy"/>', "busy", []),
    ],
)
def test_a_placed_call_follows_say_hangup_and_reject(
    key: Key,
    emu_client: Client,
    emu_hooks: EmuHooks,
    emu_url: str,
    twiml: str,
    status: str,
    said: list[str],
) -> None:
    app_sid = _voice_app(
        emu_client, emu_hooks, voice_method="GET", status_callback=emu_hooks.url("/app-status")
    )
    emu_hooks.serve("/voice", 200, f"<Response>{twiml}</Response>")
    emu_register_softphone(emu_url, key.token("eve_5", application_sid=app_sid))
    placed = place(emu_url, "eve_5", To="+19005550100").json()
    assert placed["status"] == status
    assert placed["said"] == said
    assert (placed["conferenceName"], placed["conferenceSid"]) == (None, None)
    assert emu_client.calls(placed["callSid"]).fetch().status == status
    voice = emu_hooks.all()[0]
    assert (voice.method, voice.valid) == ("GET", True)  # the App's VoiceMethod, signed
    assert voice.query["From"] == "client:eve_5" and voice.query["To"] == "+19005550100"
    # The App's StatusCallback hears how the call ended.
    completed = emu_hooks.wait_count(2)[1]
    assert completed.path.endswith("/app-status")
    assert (completed["CallSid"], completed["CallStatus"]) == (placed["callSid"], status)


def test_a_placed_call_is_refused_without_what_it_needs(
    key: Key, emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    assert place(emu_url, "nobody", To="+14155550100").status_code == 404

    emu_register_softphone(emu_url, key.token("fay_6"))  # no outgoing application
    assert place(emu_url, "fay_6", To="+14155550100").status_code == 403

    emu_register_softphone(emu_url, key.token("fay_6", application_sid="AP" + "a" * 32))
    unknown = place(emu_url, "fay_6", To="+14155550100")
    assert unknown.status_code == 400 and unknown.json()["code"] == 21218

    bare = emu_client.api.v2010.account.applications.create(friendly_name="bare")
    emu_register_softphone(emu_url, key.token("fay_6", application_sid=bare.sid))
    no_url = place(emu_url, "fay_6", To="+14155550100")
    assert no_url.status_code == 400 and "VoiceUrl" in no_url.json()["message"]

    app_sid = _voice_app(emu_client, emu_hooks)
    emu_register_softphone(emu_url, key.token("fay_6", application_sid=app_sid))
    assert place(emu_url, "fay_6").status_code == 400  # no To

    emu_register_softphone(emu_url, key.token("fay_6", application_sid=app_sid, ttl=2))
    expires = emu_get(emu_url, "softphones").json()["softphones"][0]["expires"]
    wait_until(lambda: time.time() > expires + 0.01, timeout=5, what="the token to expire")
    expired = place(emu_url, "fay_6", To="+14155550100")
    assert expired.status_code == 403 and expired.json()["code"] == 20104
    assert emu_hooks.all() == []  # the app was never asked


def test_a_failing_voice_app_is_retried_as_its_overrides_say_and_fails_the_call(
    key: Key, emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    app_sid = _voice_app(emu_client, emu_hooks, "#rc=2&rp=5xx")
    emu_hooks.serve("/voice", 503)
    emu_register_softphone(emu_url, key.token("gus_7", application_sid=app_sid))
    response = place(emu_url, "gus_7", To="+14155550100")
    assert response.status_code == 502
    assert response.json()["status"] == "failed"
    assert len(emu_hooks.all()) == 3  # the first request and the two retries rc asked for
    tokens = {h.params["CallSid"] for h in emu_hooks.all()}
    assert tokens == {response.json()["callSid"]}
    assert emu_client.calls(response.json()["callSid"]).fetch().status == "failed"
