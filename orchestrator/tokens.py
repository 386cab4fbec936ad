"""Agents' softphone credentials: a user's Client identity and the Twilio Access Token
that lets a softphone register under it (docs/api.md, GetAppConfig).

The identity a softphone registers under must be the one an invite of its user dials
(`client:<identity>`), or the invite rings no one. Both come from `client_identity`:
the token here, and the invite in the member scripts (`orchestrator/lua/_members.lua`
dials `client:` followed by the user id, which is what `client_identity` returns).
"""

from __future__ import annotations

import re

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

# Twilio's rule for a Client identity: letters, digits and underscore, at most 121
# characters. The mobile SDKs break on anything else (an `@`, a space).
IDENTITY_RE = re.compile(r"^[A-Za-z0-9_]{1,121}$")


class InvalidIdentity(ValueError):
    """A user id that is no valid Client identity (user ids are `usr_<hex>`: never)."""


def client_identity(user_id: str) -> str:
    """The user's Client identity: the user id itself, which obeys Twilio's rule, so the
    token's identity and the invite's `client:<identity>` are one value and never drift."""
    if not IDENTITY_RE.match(user_id):
        raise InvalidIdentity(f"{user_id!r} is not a valid Twilio Client identity")
    return user_id


def client_address(identity: str) -> str:
    """What Twilio dials to ring the softphones registered under `identity`."""
    return f"client:{identity}"


def access_token(
    account_sid: str,
    api_key_sid: str,
    api_key_secret: str,
    app_sid: str,
    identity: str,
    ttl: int,
    push_credential_sid: str | None = None,
) -> str:
    """A Twilio Access Token (JWT, HS256, signed with the API key's secret) with a Voice
    grant: incoming calls to `identity` allowed, outgoing calls sent to the TwiML App
    `app_sid`; with `push_credential_sid`, mobile SDKs are woken by push for incoming
    calls. Valid for `ttl` seconds from now."""
    if not IDENTITY_RE.match(identity):
        raise InvalidIdentity(f"{identity!r} is not a valid Twilio Client identity")
    token = AccessToken(account_sid, api_key_sid, api_key_secret, identity=identity, ttl=ttl)
    token.add_grant(
        VoiceGrant(
            incoming_allow=True,
            outgoing_application_sid=app_sid,
            push_credential_sid=push_credential_sid,
        )
    )
    jwt = token.to_jwt()
    return jwt.decode() if isinstance(jwt, bytes) else jwt
