"""The official `twilio` REST client, pointed wherever TWILIO_API_BASE_URL says: built in
one place for the workers (which dial) and `orchestrator twilio setup` (which configures
the account), so both reach the emulator the same way."""

from __future__ import annotations

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from orchestrator.settings import TWILIO_API

# Every call-related Twilio request is cut at 15 s; waiting longer only holds a worker.
TIMEOUT_SECONDS = 15


def client(
    account_sid: str,
    auth_token: str,
    api_base_url: str = TWILIO_API,
    timeout: float = TIMEOUT_SECONDS,
) -> Client:
    """A client of the account `account_sid`, against `api_base_url` (Twilio's, or the
    emulator's)."""
    rest = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
    if api_base_url != TWILIO_API:
        # TWILIO_REGION / TWILIO_EDGE would rewrite the emulator's host name.
        rest.region = None
        rest.edge = None
        rest.api.base_url = api_base_url
    return rest
