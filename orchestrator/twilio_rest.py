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
    rest = Client(account_sid, auth_token, http_client=_http_client(api_base_url, timeout))
    if api_base_url != TWILIO_API:
        # TWILIO_REGION / TWILIO_EDGE would rewrite the emulator's host name.
        rest.region = None
        rest.edge = None
        rest.api.base_url = api_base_url
    return rest


def _http_client(api_base_url: str, timeout: float) -> TwilioHttpClient:
    """The helper library's own HTTP client, with the environment's proxy and CA bundle
    settings (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) read once, here: `requests`
    would read the whole environment again on every request, a third of a request's CPU,
    which a worker ending a ring-all's legs at once pays nine times over."""
    http = TwilioHttpClient(timeout=timeout)
    session = http.session
    assert session is not None  # pool_connections (the default) gives it one
    found = session.merge_environment_settings(api_base_url, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    return http
