"""`orchestrator twilio setup`: makes a Twilio account ready for the service and returns
the settings agents' softphones need (docs/operations.md#orchestrator-twilio-setup).

Three things at Twilio, each changed only if it is not already as the service needs it,
so a second run changes nothing:

- an API key, which signs agents' access tokens. Its secret is shown once, in the answer
  to its create, and can never be read back: a key the settings name is kept while Twilio
  still has it, and a new one is made only on the first run (no key named) or when asked
  (`new_key`). A named key Twilio no longer has is an error unless `new_key`: making one
  silently would print settings that differ from the deployed ones without saying so.
- a TwiML App, found by its friendly name (`APP_NAME`), or the one TWILIO_TWIML_APP_SID
  names: its Voice URL is the service's voice webhook, where agents' softphones' calls go.
- every IncomingPhoneNumber of the account that the service knows (provisioned in Redis):
  the same webhook, POST, and no TwiML App of its own (Twilio would ignore the Voice URL
  for it). Numbers the service does not know are left alone.

Only the official `twilio` client talks to Twilio (or to the emulator, through
TWILIO_API_BASE_URL). What changed is said through `say`, one line each.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from orchestrator import callback_urls, provision, redis_client, twilio_rest
from orchestrator.settings import TWILIO_API, Settings

#: The friendly name of the TwiML App the setup makes, and finds again by it.
APP_NAME = "Conference orchestrator"
#: The friendly name of the API keys it makes (any number of them may have it).
KEY_NAME = "Conference orchestrator"
VOICE_METHOD = "POST"


class SetupError(RuntimeError):
    """What stops the setup: one line an operator can act on, never a traceback."""


@dataclass(frozen=True)
class SoftphoneSettings:
    """The settings the web process needs to give agents' softphones their access tokens."""

    api_key_sid: str
    api_key_secret: str
    twiml_app_sid: str

    def env(self) -> dict[str, str]:
        """As environment variables, in the order they are printed."""
        return {
            "TWILIO_API_KEY_SID": self.api_key_sid,
            "TWILIO_API_KEY_SECRET": self.api_key_secret,
            "TWILIO_TWIML_APP_SID": self.twiml_app_sid,
        }

    def lines(self) -> str:
        """`NAME=value`, one a line: what `orchestrator twilio setup` prints on stdout."""
        return "".join(f"{name}={value}\n" for name, value in self.env().items())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def setup(
    client: Client,
    known_numbers: Collection[str],
    public_base_url: str,
    key: tuple[str, str] | None = None,
    app_sid: str | None = None,
    new_key: bool = False,
    say: Callable[[str], None] = _stderr,
) -> SoftphoneSettings:
    """Make the account of `client` ready (the module's docstring says how) and return the
    settings. `key` is the (sid, secret) the settings name, `app_sid` their TwiML App;
    `known_numbers` the E.164 numbers the service knows. SetupError for what Twilio
    refuses or what the operator must decide."""
    changes: list[str] = []

    def change(line: str) -> None:
        changes.append(line)
        say(line)

    webhook = callback_urls.voice(public_base_url.rstrip("/"))
    try:
        key_sid, key_secret = _api_key(client, key, new_key, change, say)
        app = _twiml_app(client, app_sid, webhook, change, say)
        _numbers(client, set(known_numbers), webhook, change)
    except TwilioRestException as exc:
        raise SetupError(_refused(exc)) from None
    except (TwilioException, twilio_rest.TwilioUnreachable) as exc:
        raise SetupError(f"cannot reach Twilio: {exc}") from None
    if not changes:
        say("nothing to change")
    return SoftphoneSettings(key_sid, key_secret, app)


def _refused(exc: TwilioRestException) -> str:
    """Twilio's refusal in one line (its exception's own text is a multi-line coloured
    report)."""
    code = f" (error {exc.code})" if exc.code else ""
    line = f"Twilio refused {exc.method} {exc.uri}: HTTP {exc.status}{code}: {exc.msg}"
    if exc.status == 401:
        line += " (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)"
    return line


def _api_key(
    client: Client,
    named: tuple[str, str] | None,
    new_key: bool,
    change: Callable[[str], None],
    say: Callable[[str], None],
) -> tuple[str, str]:
    """The named key while Twilio has it, else a new one where the module's rules allow."""
    if named is not None and not new_key:
        sid, secret = named
        try:
            client.keys(sid).fetch()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
            raise SetupError(
                f"the API key TWILIO_API_KEY_SID={sid} no longer exists at Twilio: run "
                "`orchestrator twilio setup --new-key` to make a new one, then deploy the "
                "settings it prints"
            ) from None
        return sid, secret
    created = client.new_keys.create(friendly_name=KEY_NAME)
    change(f"created API key {created.sid}")
    if named is not None and named[0] != created.sid:
        say(
            f"the API key {named[0]} still works until you delete it at Twilio "
            "(once the new settings are deployed)"
        )
    return created.sid, created.secret


def _twiml_app(
    client: Client,
    named: str | None,
    webhook: str,
    change: Callable[[str], None],
    say: Callable[[str], None],
) -> str:
    """The TwiML App's sid, its Voice URL the service's webhook."""
    app: Any = None
    if named is not None:
        try:
            app = client.applications(named).fetch()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
            say(f"TWILIO_TWIML_APP_SID={named} is no TwiML App of the account; using {APP_NAME!r}")
    if app is None:
        found = client.applications.list(friendly_name=APP_NAME)
        if len(found) > 1:
            say(f"{len(found)} TwiML Apps are named {APP_NAME!r}; using {found[0].sid}")
        app = found[0] if found else None
    if app is None:
        app = client.applications.create(
            friendly_name=APP_NAME, voice_url=webhook, voice_method=VOICE_METHOD
        )
        change(f"created TwiML App {app.sid} ({APP_NAME!r}), Voice URL {webhook}")
    elif app.voice_url != webhook or (app.voice_method or "").upper() != VOICE_METHOD:
        client.applications(app.sid).update(voice_url=webhook, voice_method=VOICE_METHOD)
        change(f"TwiML App {app.sid} now points at {webhook}")
    return app.sid


def _numbers(client: Client, known: set[str], webhook: str, change: Callable[[str], None]) -> None:
    """Every number of the account that the service knows: its calls to the webhook."""
    if not known:
        return
    for number in client.incoming_phone_numbers.stream(page_size=1000):
        if number.phone_number not in known:
            continue
        if (
            number.voice_url == webhook
            and (number.voice_method or "").upper() == VOICE_METHOD
            and not number.voice_application_sid
        ):
            continue
        client.incoming_phone_numbers(number.sid).update(
            voice_url=webhook, voice_method=VOICE_METHOD, voice_application_sid=""
        )
        change(f"number {number.phone_number} now points at {webhook}")


def run(
    account_sid: str,
    auth_token: str,
    public_base_url: str,
    redis_url: str,
    api_base_url: str = TWILIO_API,
    key: tuple[str, str] | None = None,
    app_sid: str | None = None,
    new_key: bool = False,
    say: Callable[[str], None] = _stderr,
) -> SoftphoneSettings:
    """`setup` with the numbers Redis at `redis_url` holds, read before anything changes at
    Twilio (Redis away: nothing is half done)."""
    r = redis_client.connect_sync(redis_url)
    try:
        known = provision.list_numbers(r)
    finally:
        r.close()
    client = twilio_rest.client(account_sid, auth_token, api_base_url)
    return setup(client, known, public_base_url, key, app_sid, new_key, say)


def from_settings(
    settings: Settings, new_key: bool = False, say: Callable[[str], None] = _stderr
) -> SoftphoneSettings:
    """`run` for the process's settings: the key they name needs both its sid and its
    secret (only the secret can sign a token)."""
    sid, secret = settings.twilio_api_key_sid, settings.twilio_api_key_secret
    if bool(sid) != bool(secret) and not new_key:
        given, absent = (
            ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
            if sid
            else ("TWILIO_API_KEY_SECRET", "TWILIO_API_KEY_SID")
        )
        raise SetupError(
            f"{given} is set but {absent} is not: set both, or run with --new-key to make a new key"
        )
    return run(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.public_base_url,
        settings.redis_url,
        settings.twilio_api_base_url,
        key=(sid, secret) if sid and secret else None,
        app_sid=settings.twilio_twiml_app_sid,
        new_key=new_key,
        say=say,
    )
