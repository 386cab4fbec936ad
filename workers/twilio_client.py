"""The real `twilio` REST client, pointed wherever TWILIO_API_BASE_URL says
(`orchestrator.twilio_rest`, shared with `orchestrator twilio setup`)."""

from __future__ import annotations

from twilio.rest import Client

from orchestrator.settings import Settings
from orchestrator.twilio_rest import TIMEOUT_SECONDS, client


def make_client(settings: Settings, timeout: float = TIMEOUT_SECONDS) -> Client:
    return client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_api_base_url,
        timeout,
    )
