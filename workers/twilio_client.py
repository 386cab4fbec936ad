"""The real `twilio` REST client, pointed wherever TWILIO_API_BASE_URL says."""

from __future__ import annotations

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from orchestrator.settings import TWILIO_API, Settings

# Every call-related Twilio request is cut at 15 s; waiting longer only holds a worker.
TIMEOUT_SECONDS = 15


def make_client(settings: Settings, timeout: float = TIMEOUT_SECONDS) -> Client:
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    if settings.twilio_api_base_url != TWILIO_API:
        # TWILIO_REGION / TWILIO_EDGE would rewrite the emulator's host name.
        client.region = None
        client.edge = None
        client.api.base_url = settings.twilio_api_base_url
    return client
