"""The agent's own calls (docs/api.md): click to call (NewOutgoingSession; with a `flowId`,
a progressive dial through a ring queue) and the sessions the agent is on
(GetMySessions). Both need a key that acts as a user: the call rings that user (or is
theirs to place), and "my" sessions are theirs."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from orchestrator import agent_calls, apikeys, store
from orchestrator.api.binding import Value, field_error
from orchestrator.api.members import actor, caller_id, dial_refusal, text
from orchestrator.dto import SessionListView, SessionView
from orchestrator.errors import ApiError, FieldError, forbidden, validation
from orchestrator.jobs import dial_job

FIELD = "numberToDial"


def _user(principal: apikeys.Principal, operation: str) -> str:
    if principal.user_id is None:
        raise forbidden(f"This API key acts as no user; {operation} needs a key of a user")
    return principal.user_id


def _refusal(refusal: agent_calls.Refusal) -> ApiError:
    return validation([field_error(FIELD, refusal.code, f"{{field}}: {refusal.reason}.")])


async def new_outgoing_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    """Rings the key's user, then dials numberToDial once their leg is in the conference."""
    user_id = _user(principal, "NewOutgoingSession")
    settings = request.app.state.settings
    errors: list[FieldError] = []
    flow = text(dto, "flowId") or None
    caller = caller_id("callerId", text(dto, "callerId"), settings.phone_region, errors)
    dialled = text(dto, FIELD)
    planned = agent_calls.plan(settings, user_id, dialled, caller)
    if isinstance(planned, agent_calls.Refusal):
        errors += _refusal(planned).errors
    elif planned.kind == "phone":
        # The account's own list, as an invite reads it (the script reads it again).
        why = await dial_refusal(request, principal.account_id, planned.ref)
        if why is not None:
            errors.append(field_error(FIELD, "DialNotAllowed", f"{{field}}: {why}."))
    if errors:
        raise validation(errors)
    assert not isinstance(planned, agent_calls.Refusal)
    if flow is not None:
        planned = dataclasses.replace(planned, queue_id=flow)
    sid, agent_member, dest_member = store.new_id("ses"), store.new_id("mem"), store.new_id("mem")

    def job(member: str) -> tuple[str, str, str, str, list[str]]:
        return dial_job(
            sid,
            member,
            settings.dial_retry_backoff,
            settings.dial_job_timeout,
            settings.event_retention_seconds,
        )

    result = await store.create_outgoing(
        request.app.state.scripts,
        planned,
        account_id=principal.account_id,
        sid=sid,
        agent_member=agent_member,
        dest_member=dest_member,
        actor=actor(principal),
        agent_job=None if flow else job(agent_member),
        dest_job=job(dest_member),
        render=True,
    )
    if result.outcome == "noqueue":
        message = f"{{field}}: there is no ring queue '{flow}' in this account."
        raise validation([field_error("flowId", "NotFound", message)])
    refusal = agent_calls.refused(planned, result)
    if refusal is not None:
        if refusal.code == "NoUser":
            raise forbidden("The user this API key acts as no longer exists")
        raise _refusal(refusal)
    assert result.session is not None
    return result.session


async def get_my_sessions(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionListView:
    user_id = _user(principal, "GetMySessions")
    sessions = await store.my_sessions(
        request.app.state.redis,
        request.app.state.scripts,
        user_id=user_id,
        account_id=principal.account_id,
    )
    return SessionListView("sessions", sessions)
