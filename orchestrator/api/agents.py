"""What an agent's softphone asks of the service (docs/api.md, GetAppConfig): its Twilio
access token, the Client identity it registers under, and the agent's state; and what
the agent tells it (SetAgentState): whether ring queues may offer them calls."""

from __future__ import annotations

import re

from starlette.requests import Request

from orchestrator import apikeys, keys, store, tokens
from orchestrator.api.binding import Value, field_error, trim
from orchestrator.dto import SET_AGENT_STATE, AgentStateReasons, AgentStates
from orchestrator.errors import ApiError, forbidden, validation
from orchestrator.settings import Settings

# A user's hash without an agent state (a user added before ring queues): logged out.
DEFAULT_STATE = AgentStates.LoggedOut.value
DEFAULT_REASON = AgentStateReasons.Unknown.value
_STATES = {s.value for s in AgentStates}
_REASONS = {r.value for r in AgentStateReasons}
_PUSH_CREDENTIAL_SID = re.compile(r"^CR[0-9a-fA-F]{32}$")
# Settings are read once at start, so only a restart with them set changes the answer.
NOT_CONFIGURED_RETRY_AFTER = "300"


def not_configured(missing: list[str]) -> ApiError:
    """503 NotConfigured: the deployment lacks what signs tokens (never a token Twilio
    would refuse). The operator sets the named settings and restarts the web processes."""
    return ApiError(
        503,
        "NotConfigured",
        "Softphones are not configured on this server: "
        + ", ".join(missing)
        + (" is" if len(missing) == 1 else " are")
        + " not set; an operator sets them and restarts the web processes",
        headers={"Retry-After": NOT_CONFIGURED_RETRY_AFTER},
    )


def _push_credential(value: Value) -> str | None:
    text = trim(value) if isinstance(value, str) else ""
    if not text:
        return None
    if not _PUSH_CREDENTIAL_SID.match(text):
        message = "{field} must be a Twilio Push Credential SID (CR and 32 hex digits)."
        raise validation([field_error("pushCredentialSid", "InvalidValue", message)])
    return text


def _names(user: dict[str, str]) -> tuple[str | None, str | None]:
    """First and last name: as stored, else the stored full name split at its first space."""
    first, last = user.get("firstName") or None, user.get("lastName") or None
    if first is None and last is None and user.get("name"):
        head, _, tail = user["name"].strip().partition(" ")
        first, last = head or None, tail.strip() or None
    return first, last


async def get_app_config(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> dict[str, object]:
    """The AppConfig of the user the key acts as. A key of no user is refused (403: the key
    is known but not allowed this operation, as a missing role is); missing token settings
    answer 503 NotConfigured naming them, after the caller is known to be allowed to ask."""
    if principal.user_id is None:
        raise forbidden("This API key acts as no user; GetAppConfig needs a key of a user")
    push_credential = _push_credential(dto.get("pushCredentialSid"))
    settings: Settings = request.app.state.settings
    missing = settings.softphone_settings_missing
    if missing:
        raise not_configured(missing)
    raw = await request.app.state.redis.hgetall(keys.user(principal.user_id))
    user = {_text(k): _text(v) for k, v in raw.items()}
    if user.get("accountId") != principal.account_id:
        # The user was removed (or never was of this account) after the key was made.
        raise forbidden("The user this API key acts as no longer exists")
    identity = tokens.client_identity(principal.user_id)
    assert settings.twilio_api_key_sid and settings.twilio_api_key_secret
    assert settings.twilio_twiml_app_sid
    token = tokens.access_token(
        settings.twilio_account_sid,
        settings.twilio_api_key_sid,
        settings.twilio_api_key_secret,
        settings.twilio_twiml_app_sid,
        identity,
        settings.access_token_ttl,
        push_credential,
    )
    first, last = _names(user)
    state = user.get("agentState")
    reason = user.get("agentStateReason")
    return {
        "endpointId": principal.user_id,
        "accountId": principal.account_id,
        "accessToken": token,
        "identity": identity,
        "emailAddress": user.get("email"),
        "userInfo": {
            "firstName": first,
            "lastName": last,
            "name": user.get("name"),
            "avatarUrl": user.get("avatarUrl"),
        },
        "agentState": state if state in _STATES else DEFAULT_STATE,
        "agentStateReason": reason if reason in _REASONS else DEFAULT_REASON,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# What an agent may set themselves; WrapUp (and the reasons other than SetByUser) are the
# ring queues' own (docs/api.md#agent-state).
SETTABLE_STATES: tuple[str, ...] = SET_AGENT_STATE[0].values


async def set_agent_state(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> dict[str, str]:
    """The agent (the key's user) says whether queues may offer them calls: Ready, NotReady
    or LoggedOut. The change and its AgentStateChanged event are one script
    (store.set_agent_state); setting the state the agent is already in changes nothing."""
    if principal.user_id is None:
        raise forbidden("This API key acts as no user; SetAgentState needs a key of a user")
    state = dto.get("agentState")
    if not isinstance(state, str) or not state:
        raise validation([field_error("agentState", "NotEmpty", "{field} must not be empty.")])
    if state not in SETTABLE_STATES:
        message = (
            f"{{field}} can only be {', '.join(SETTABLE_STATES[:-1])} or {SETTABLE_STATES[-1]}; "
            f"{state} is set by the service."
        )
        raise validation([field_error("agentState", "InvalidValue", message)])
    changed = await store.set_agent_state(
        request.app.state.scripts,
        user_id=principal.user_id,
        account_id=principal.account_id,
        state=state,
    )
    if changed is None:
        raise forbidden("The user this API key acts as no longer exists")
    agent_state, reason = changed
    return {"agentState": agent_state, "agentStateReason": reason}
