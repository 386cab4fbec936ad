"""Where dials may go, against the running service: a number the account may not
dial is refused with a 400 naming the field, before anything is stored or Twilio
is asked; `accounts update --dial-countries` changes it for one account."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from orchestrator import keys, provision
from orchestrator.launch import wait_until
from tests.support.accounts import Account, random_number
from tests.support.cli import cli
from tests.support.stack import Stack

GB_NUMBER = "+442079460018"
US_PREMIUM = "+19002345678"

INVITE = "/sessions/{sid}/members"
ADD = "/sessions/{sid}/conference/members"
REDIRECT = "/sessions/{sid}/redirect"


def open_session(stack: Stack, account: Account) -> str:
    return stack.incoming_call(random_number(), account.number)["conferenceName"]


def post(
    stack: Stack, account: Account, path: str, sid: str, body: dict[str, str]
) -> httpx.Response:
    with stack.client(account.key) as c:
        return c.post(path.format(sid=sid), json=body)


def refused_field(response: httpx.Response) -> dict[str, Any]:
    """The one `errors` entry of a refused dial."""
    assert response.status_code == 400, response.text
    status = response.json()["responseStatus"]
    assert status["errorCode"] == "DialNotAllowed"
    [entry] = status["errors"]
    return entry


def update_countries(stack: Stack, account_id: str, value: str) -> None:
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    result = cli("accounts", "update", account_id, "--dial-countries", value, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == account_id + "\n"


def nothing_stored(stack: Stack, sid: str, number: str) -> None:
    """The refused dial left no trace: no member (so no dial job), no log entry."""
    assert stack.redis.hget(keys.session_active(sid), number) is None
    logged = [e["message"] for e in stack.session_log(sid)]
    assert not [m for m in logged if number in m or "transfer" in m.lower()]
    calls = stack.emulator("calls").json()["calls"]
    assert not [c for c in calls if c["to"] == number and c["conferenceName"] == sid]


def test_a_number_of_another_country_is_refused_until_the_account_may_dial_it(
    stack: Stack, account: Account
) -> None:
    sid = open_session(stack, account)

    refused = post(stack, account, INVITE, sid, {"memberToAdd": GB_NUMBER})
    entry = refused_field(refused)
    assert entry["fieldName"] == "MemberToAdd"
    assert entry["message"] == (
        "'Member To Add': +44 20 7946 0018 is in GB; this account may dial US."
    )
    nothing_stored(stack, sid, GB_NUMBER)

    update_countries(stack, account.id, "us,GB")
    assert stack.redis.hget(keys.account(account.id), "dialCountries") == "US,GB"
    # Each web process reads the account's list again within a second.
    allowed = wait_until(
        lambda: (
            (r := post(stack, account, INVITE, sid, {"memberToAdd": GB_NUMBER})).status_code == 200
            and r
        ),
        5,
        "the GB invite to be let through",
    )
    assert GB_NUMBER in [m["identity"] for m in allowed.json()["members"]]
    mid = wait_until(
        lambda: stack.redis.hget(keys.session_active(sid), GB_NUMBER), 10, "the GB member"
    )
    wait_until(lambda: stack.creates(mid) == 1, 10, f"the dial of {GB_NUMBER}")

    # Premium-rate is refused whatever the countries.
    premium = refused_field(post(stack, account, INVITE, sid, {"memberToAdd": US_PREMIUM}))
    assert premium["fieldName"] == "MemberToAdd"
    assert premium["message"].endswith(
        "+1 900-234-5678 is a premium-rate number; premium-rate numbers are never dialled."
    )
    assert stack.redis.hget(keys.session_active(sid), US_PREMIUM) is None

    # `default` goes back to DIAL_COUNTRIES (US here) for the account.
    update_countries(stack, account.id, "default")
    assert stack.redis.hget(keys.account(account.id), "dialCountries") is None
    # Within the second an old reading may still let one through (the documented bound):
    # each try is a number of its own, and the one refused is not stored.
    others = (f"+4420794601{i:02d}" for i in range(100))

    def refused_now() -> str | None:
        number = next(others)
        response = post(stack, account, INVITE, sid, {"memberToAdd": number})
        return number if response.status_code == 400 else None

    last = wait_until(refused_now, 5, "the account's own list to be forgotten", interval=0.2)
    assert stack.redis.hget(keys.session_active(sid), last) is None


def test_add_conference_member_names_destination(stack: Stack, account: Account) -> None:
    sid = open_session(stack, account)
    entry = refused_field(post(stack, account, ADD, sid, {"destination": GB_NUMBER}))
    assert entry["fieldName"] == "Destination"
    assert "is in GB; this account may dial US" in entry["message"]
    nothing_stored(stack, sid, GB_NUMBER)


@pytest.mark.parametrize("destination", [GB_NUMBER, US_PREMIUM])
def test_a_blind_transfer_to_a_forbidden_number_is_refused_and_dials_nothing(
    stack: Stack, account: Account, destination: str
) -> None:
    sid = open_session(stack, account)
    entry = refused_field(post(stack, account, REDIRECT, sid, {"destination": destination}))
    assert entry["fieldName"] == "Destination"
    nothing_stored(stack, sid, destination)
    # The caller was not put on hold for a transfer that cannot happen.
    with stack.client(account.key) as c:
        session = c.get(f"/sessions/{sid}").json()
    assert session["callState"] != "Hold"


def test_a_user_is_dialled_whatever_the_countries(stack: Stack, account: Account) -> None:
    update_countries(stack, account.id, "GB")
    sid = open_session(stack, account)
    response = post(stack, account, INVITE, sid, {"memberToAdd": account.user_email})
    assert response.status_code == 200, response.text
    assert account.user_id in [m["identity"] for m in response.json()["members"]]


def test_accounts_update_refuses_an_unknown_account_or_code(stack: Stack, account: Account) -> None:
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    unknown = cli("accounts", "update", "acc_missing", "--dial-countries", "US", env=env)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "acc_missing" in unknown.stderr
    bad = cli("accounts", "update", account.id, "--dial-countries", "US,UK", env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "'UK': not a country code" in bad.stderr
    assert stack.redis.hget(keys.account(account.id), "dialCountries") is None


def test_malformed_dial_countries_stop_the_web_process_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_URL"))}
    env |= {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "PUBLIC_BASE_URL": "https://x.example.com",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "token",
        "DIAL_COUNTRIES": "US,XX",
    }
    result = cli("web", env=env)
    assert result.returncode == 2
    assert "orchestrator: DIAL_COUNTRIES: 'XX': not a country code" in result.stderr


def test_a_user_whose_email_starts_like_a_number_is_dialled_as_the_user(
    stack: Stack, account: Account
) -> None:
    """The dial check is for numbers: a member named by email is a user, whatever the
    email's first character (a schemathesis run found "+1855...@..." refused as a number)."""
    email = f"+1900{random_number()[-7:]}@example.com"
    r = stack.redis
    uid = provision.add_user(r, email, account.id, name="Plus Agent")
    sid = open_session(stack, account)
    response = post(stack, account, INVITE, sid, {"memberToAdd": email})
    assert response.status_code == 200, response.text
    [member] = [m for m in response.json()["members"] if m["identity"] == uid]
    assert member["role"] == "Agent"

    def dialled() -> list[dict[str, Any]]:
        calls = stack.emulator("calls").json()["calls"]
        return [c for c in calls if c["conferenceName"] == sid and c["to"] == f"client:{uid}"]

    wait_until(dialled, 10, "the user's dial")
