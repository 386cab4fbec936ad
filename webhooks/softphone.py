"""A call an agent places from their softphone (docs/api.md#calls-agents-place).

Twilio asks the TwiML App's Voice URL, which is the service's voice webhook, with
`From` = `client:<identity>` and `To` = what the agent dialled. The call becomes an
outgoing session in one script (create_outgoing.lua): the agent's leg joins the
session's conference by the TwiML answered here, and the destination is dialled once
that leg is in the conference. A call that cannot be placed is answered with its
reason, spoken, and nothing is dialled.
"""

from __future__ import annotations

import logging

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from orchestrator import agent_calls, metrics, store
from orchestrator.jobs import dial_job
from orchestrator.logs import ids
from orchestrator.settings import Settings
from webhooks import twiml

log = logging.getLogger("orchestrator.webhooks")

CLIENT_PREFIX = "client:"
# The custom parameter a softphone may send (device.connect({params: {callerId}})).
CALLER_ID_PARAM = "callerId"


def _spoken(reason: str) -> str:
    return f"Your call was not placed: {reason}. Goodbye."


async def agent_call(request: Request, form: FormData) -> Response:
    settings: Settings = request.app.state.settings
    call_sid, from_ = form["CallSid"], form["From"]
    user_id = from_[len(CLIENT_PREFIX) :]
    dialled = form.get("To", "")
    planned = agent_calls.plan(settings, user_id, dialled, form.get(CALLER_ID_PARAM))
    if isinstance(planned, agent_calls.Refusal):
        return _refuse(call_sid, from_, dialled, planned)
    sid, agent_member, dest_member = store.new_id("ses"), store.new_id("mem"), store.new_id("mem")
    result = await store.create_outgoing(
        request.app.state.scripts,
        planned,
        call_sid=call_sid,
        sid=sid,
        agent_member=agent_member,
        dest_member=dest_member,
        actor=store.Actor(id=user_id),
        agent_job=None,
        dest_job=dial_job(
            sid,
            dest_member,
            settings.dial_retry_backoff,
            settings.dial_job_timeout,
            settings.event_retention_seconds,
        ),
    )
    refusal = agent_calls.refused(planned, result)
    if refusal is not None:
        return _refuse(call_sid, from_, dialled, refusal)
    assert result.sid is not None
    metrics.callback("agent-call", result.outcome)
    log.info(
        "agent call %s from %s to %s: session %s (%s)",
        call_sid,
        from_,
        dialled,
        result.sid,
        result.outcome,
        extra=ids(result.sid, call=call_sid),
    )
    return twiml.join_conference(result.sid, settings.public_base_url, customer=False)


def _refuse(call_sid: str, from_: str, dialled: str, refusal: agent_calls.Refusal) -> Response:
    metrics.callback("agent-call", "refused")
    log.warning(
        "agent call %s from %s to %r not placed: %s (%s)",
        call_sid,
        from_,
        dialled,
        refusal.reason,
        refusal.code,
        extra=ids(call=call_sid),
    )
    return twiml.say_and_hang_up(_spoken(refusal.reason))
