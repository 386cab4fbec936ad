"""X-Twilio-Signature checks: an unsigned or forged callback changes nothing.

Twilio signs the URL it was configured with, so we validate against
PUBLIC_BASE_URL + path + query, never the URL this process happens to see
behind a proxy or tunnel.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import FormData
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from orchestrator.binding import read_body
from orchestrator.errors import ApiError


class SignatureError(ApiError):
    pass


def public_url(request: Request, public_base_url: str) -> str:
    url = public_base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def signed_form(request: Request) -> FormData:
    """The callback's form parameters, after proving Twilio sent them."""
    body = await read_body(request)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        pairs = None
    form = FormData(pairs or [])
    signature = request.headers.get("x-twilio-signature", "")
    validator: RequestValidator = request.app.state.validator
    url = public_url(request, request.app.state.settings.public_base_url)
    if pairs is None or not signature or not validator.validate(url, form, signature):
        raise SignatureError(403, "Forbidden", "Invalid or missing X-Twilio-Signature")
    return form
