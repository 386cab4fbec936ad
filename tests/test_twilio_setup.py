"""`orchestrator twilio setup` as an operator runs it, against the emulator's account and the
suite's Redis (docs/operations.md#orchestrator-twilio-setup): what it makes, what it prints,
that a second run changes nothing, `--new-key`, and Twilio's refusals as one clear line. And
the launcher, which runs the same setup for every stack it starts."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from orchestrator import callback_urls, provision, redis_client, tokens, twilio_rest, twilio_setup
from orchestrator.launch import Service, free_port, python, wait_http
from tests.support import net
from tests.support.accounts import Account, random_number
from tests.support.stack import Stack

ACCOUNT_SID = "AC" + "5e70" * 8
AUTH_TOKEN = "twilio-setup-test-token"
PUBLIC = "https://orchestrator.example.com"
WEBHOOK = callback_urls.voice(PUBLIC)
ELSEWHERE = "https://elsewhere.example.com/voice"
SETTING_NAMES = ["TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "TWILIO_TWIML_APP_SID"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """An emulator of the account of its own (no web process: the setup needs none)."""
    service = Service(
        redis_url,
        tmp_path_factory.mktemp("twilio-setup"),
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        softphones=False,
    )
    try:
        emulator = service.start_emulator()
        wait_http(f"{service.emulator_url}/_emulator/health", [emulator])
        yield service.emulator_url
    finally:
        service.stop_all()


@pytest.fixture
def fresh(emulator: str) -> str:
    """The emulator with nothing configured: every test starts from a new account."""
    assert net.post(f"{emulator}/_emulator/reset").is_success
    return emulator


def _client(emulator: str, auth_token: str = AUTH_TOKEN) -> Client:
    return twilio_rest.client(ACCOUNT_SID, auth_token, emulator)


def _env(emulator: str, redis_url: str, **settings: str) -> dict[str, str]:
    """An operator's environment for the account: no softphone settings unless given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "REDIS_URL", "PUBLIC_BASE_URL"))
    }
    return env | {
        "REDIS_URL": redis_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": emulator,
        "PUBLIC_BASE_URL": PUBLIC,
        **settings,
    }


def _setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python("-m", "orchestrator", "twilio", "setup", *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _printed(run: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The settings on stdout: exactly the three, one a line, in order."""
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == SETTING_NAMES, run.stdout
    settings = dict(line.split("=", 1) for line in lines)
    assert re.fullmatch(r"SK[0-9a-f]{32}", settings["TWILIO_API_KEY_SID"])
    assert re.fullmatch(r"AP[0-9a-f]{32}", settings["TWILIO_TWIML_APP_SID"])
    assert settings["TWILIO_API_KEY_SECRET"]
    return settings


def _buy(client: Client, **settings: Any) -> Any:
    """A number of the account at Twilio (not yet the service's)."""
    return client.incoming_phone_numbers.create(phone_number=random_number(), **settings)


def _provision(redis_url: str, account: Account, e164: str) -> None:
    provision.add_number(redis_client.connect_sync(redis_url), e164, account.id)


def _resource(emulator: str, leaf: str, sid: str) -> dict[str, Any]:
    """A resource's JSON as Twilio answers it (date_updated and every setting)."""
    url = f"{emulator}/2010-04-01/Accounts/{ACCOUNT_SID}/{leaf}/{sid}.json"
    answer = net.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _state(emulator: str, app_sid: str, *numbers: str) -> list[dict[str, Any]]:
    """The app's and numbers' resources."""
    return [_resource(emulator, "Applications", app_sid)] + [
        _resource(emulator, "IncomingPhoneNumbers", sid) for sid in numbers
    ]


class _Recording(TwilioHttpClient):
    """Twilio's own HTTP client, noting each request's method and URL as it sends it."""

    def __init__(self) -> None:
        super().__init__(timeout=15)
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.sent.append((method.upper(), url))
        return super().request(method, url, *args, **kwargs)


def test_first_run_makes_key_app_and_numbers_and_a_second_changes_nothing(
    fresh: str, redis_url: str, account: Account
) -> None:
    client = _client(fresh)
    known = _buy(client, voice_url=ELSEWHERE, voice_method="GET")
    _provision(redis_url, account, known.phone_number)
    other_app = client.applications.create(friendly_name="Someone else's", voice_url=ELSEWHERE)
    routed = _buy(client, voice_application_sid=other_app.sid)
    _provision(redis_url, account, routed.phone_number)
    unknown = _buy(client, voice_url=ELSEWHERE)  # at Twilio, but not the service's
    unknown_before = _resource(fresh, "IncomingPhoneNumbers", unknown.sid)

    first = _setup(_env(fresh, redis_url))
    made = _printed(first)
    key, secret, app = (made[name] for name in SETTING_NAMES)
    assert f"created API key {key}" in first.stderr
    assert f"created TwiML App {app}" in first.stderr
    assert f"number {known.phone_number} now points at {WEBHOOK}" in first.stderr
    assert f"number {routed.phone_number} now points at {WEBHOOK}" in first.stderr
    assert unknown.phone_number not in first.stderr
    assert "Traceback" not in first.stderr

    fetched_app = client.applications(app).fetch()
    assert fetched_app.friendly_name == twilio_setup.APP_NAME
    assert (fetched_app.voice_url, fetched_app.voice_method) == (WEBHOOK, "POST")
    for sid in (known.sid, routed.sid):
        number = client.incoming_phone_numbers(sid).fetch()
        assert (number.voice_url, number.voice_method) == (WEBHOOK, "POST")
        assert number.voice_application_sid is None  # else Twilio ignores the Voice URL
    assert client.keys(key).fetch().friendly_name == twilio_setup.KEY_NAME
    # Left alone: not a number the service knows.
    assert _resource(fresh, "IncomingPhoneNumbers", unknown.sid) == unknown_before

    # The printed key is one Twilio accepts: a softphone registers with a token it signs.
    token = tokens.access_token(ACCOUNT_SID, key, secret, app, account.user_id, 600)
    registered = net.post(
        f"{fresh}/_emulator/softphones", data={"AccessToken": token, "Answer": "answer"}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["identity"] == account.user_id
    forged = tokens.access_token(ACCOUNT_SID, key, "f" * 64, app, account.user_id, 600)
    assert net.post(f"{fresh}/_emulator/softphones", data={"AccessToken": forged}).is_client_error

    # Again, with the printed settings deployed: the same settings, and nothing changes.
    before = _state(fresh, app, known.sid, routed.sid, unknown.sid)
    second = _setup(_env(fresh, redis_url, **made))
    assert _printed(second) == made
    assert second.stderr.strip() == "nothing to change"
    assert _state(fresh, app, known.sid, routed.sid, unknown.sid) == before
    # What "nothing" means at Twilio: the same run, through Twilio's own HTTP client, only reads.
    recording = _Recording()
    reader = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=recording)
    reader.api.base_url = fresh
    known_numbers = provision.list_numbers(redis_client.connect_sync(redis_url))
    said: list[str] = []
    again = twilio_setup.setup(reader, known_numbers, PUBLIC, (key, secret), app, say=said.append)
    assert again.env() == made
    assert said == ["nothing to change"]
    assert recording.sent and {method for method, _ in recording.sent} == {"GET"}


def test_new_key_makes_another_and_keeps_the_app(
    fresh: str, redis_url: str, account: Account
) -> None:
    client = _client(fresh)
    made = _printed(_setup(_env(fresh, redis_url)))
    renewed = _setup(_env(fresh, redis_url, **made), "--new-key")
    again = _printed(renewed)
    assert again["TWILIO_API_KEY_SID"] != made["TWILIO_API_KEY_SID"]
    assert again["TWILIO_API_KEY_SECRET"] != made["TWILIO_API_KEY_SECRET"]
    assert again["TWILIO_TWIML_APP_SID"] == made["TWILIO_TWIML_APP_SID"]
    assert f"created API key {again['TWILIO_API_KEY_SID']}" in renewed.stderr
    # The old key is left for the operator to delete once the new one is deployed.
    assert f"{made['TWILIO_API_KEY_SID']} still works" in renewed.stderr
    assert client.keys(made["TWILIO_API_KEY_SID"]).fetch().sid == made["TWILIO_API_KEY_SID"]
    names = [a.sid for a in client.applications.list(friendly_name=twilio_setup.APP_NAME)]
    assert names == [made["TWILIO_TWIML_APP_SID"]]


def test_a_key_gone_at_twilio_is_an_error_unless_a_new_one_is_asked_for(
    fresh: str, redis_url: str
) -> None:
    client = _client(fresh)
    made = _printed(_setup(_env(fresh, redis_url)))
    client.keys(made["TWILIO_API_KEY_SID"]).delete()
    env = _env(fresh, redis_url, **made)
    refused = _setup(env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert made["TWILIO_API_KEY_SID"] in refused.stderr
    assert "no longer exists" in refused.stderr and "--new-key" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _printed(_setup(env, "--new-key"))["TWILIO_API_KEY_SID"] != made["TWILIO_API_KEY_SID"]
    # Half a key (a sid without its secret) cannot sign anything: said, not guessed.
    half = _setup(_env(fresh, redis_url, TWILIO_API_KEY_SID=made["TWILIO_API_KEY_SID"]))
    assert half.returncode == 1
    assert "TWILIO_API_KEY_SECRET is not" in half.stderr and "Traceback" not in half.stderr


def test_an_app_changed_at_twilio_is_pointed_back_and_found_by_its_name(
    fresh: str, redis_url: str
) -> None:
    client = _client(fresh)
    made = _printed(_setup(_env(fresh, redis_url)))
    app = made["TWILIO_TWIML_APP_SID"]
    client.applications(app).update(voice_url=ELSEWHERE, voice_method="GET")
    # Without TWILIO_TWIML_APP_SID: found by its friendly name, not made twice.
    env = _env(fresh, redis_url, **made)
    del env["TWILIO_TWIML_APP_SID"]
    run = _setup(env)
    assert _printed(run)["TWILIO_TWIML_APP_SID"] == app
    assert f"TwiML App {app} now points at {WEBHOOK}" in run.stderr
    fetched = client.applications(app).fetch()
    assert (fetched.voice_url, fetched.voice_method) == (WEBHOOK, "POST")


def test_twilios_refusal_is_one_clear_line(fresh: str, redis_url: str) -> None:
    wrong = _setup(_env(fresh, redis_url, TWILIO_AUTH_TOKEN="not-the-token"))
    assert wrong.returncode == 1 and wrong.stdout == ""
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1, wrong.stderr
    assert lines[0].startswith("orchestrator: Twilio refused POST ")  # the first: a new key
    assert "HTTP 401" in lines[0] and "20003" in lines[0]
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in lines[0]
    assert "\x1b[" not in lines[0]  # not the twilio library's coloured report
    nobody = _setup(_env(fresh, redis_url, TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}"))
    assert nobody.returncode == 1 and nobody.stdout == ""
    assert nobody.stderr.startswith("orchestrator: cannot reach Twilio")
    assert "Traceback" not in nobody.stderr


def test_every_stack_is_set_up_and_its_agents_softphones_register(
    stack: Stack, account: Account
) -> None:
    """The launcher ran the same setup against the stack's emulator: the web process has
    the settings, and the token it gives an agent is one the emulator accepts."""
    env = stack.env
    assert all(env.get(name) for name in SETTING_NAMES)
    client = twilio_rest.client(env["TWILIO_ACCOUNT_SID"], stack.auth_token, stack.emulator_url)
    app = client.applications(env["TWILIO_TWIML_APP_SID"]).fetch()
    assert (app.voice_url, app.voice_method) == (callback_urls.voice(stack.base_url), "POST")
    assert client.keys(env["TWILIO_API_KEY_SID"]).fetch().sid == env["TWILIO_API_KEY_SID"]
    agent = provision.create_key(
        redis_client.connect_sync(stack.redis_url), account.id, ["User"], user=account.user_id
    )
    softphone = stack.softphone(agent)
    assert softphone["identity"] == account.user_id
    listed = stack.emulator("softphones").json()["softphones"]
    assert account.user_id in [p["identity"] for p in listed]


def test_missing_settings_and_redis_away_change_nothing_at_twilio(
    fresh: str, redis_url: str
) -> None:
    bare = {k: v for k, v in _env(fresh, redis_url).items() if not k.startswith("TWILIO_")}
    missing = _setup(bare)
    assert missing.returncode == 2 and missing.stdout == ""
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        assert f"orchestrator: {name} is required but not set" in missing.stderr
    away = _setup(_env(fresh, redis_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert away.returncode == 2 and away.stdout == ""
    assert "cannot reach Redis" in away.stderr and "Traceback" not in away.stderr
    # The numbers are read before anything is made: no key, no app half-made.
    client = _client(fresh)
    assert client.keys.list() == [] and client.applications.list() == []
