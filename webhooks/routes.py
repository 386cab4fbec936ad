"""The webhook endpoints. Each answers fast, is idempotent, and makes at most
one Redis round trip; unknown sessions and calls are acknowledged and logged,
because an error would only make Twilio retry something we cannot use.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import metrics, store
from orchestrator.logs import ids
from webhooks import softphone, twiml
from webhooks.signature import signed_form

log = logging.getLogger("orchestrator.webhooks")

# Twilio sends the same token again when it retries a callback.
IDEMPOTENCY_HEADER = "i-twilio-idempotency-token"


def _ack() -> Response:
    return Response(status_code=204)


async def voice(request: Request) -> Response:
    """A call to the service: a customer's to one of our numbers starts a session with the
    caller in its conference; an agent's from a softphone (`From` a Client identity,
    through the TwiML App) is the call they place (webhooks/softphone.py)."""
    form = await signed_form(request)
    call_sid, from_, to = form.get("CallSid", ""), form.get("From", ""), form.get("To", "")
    if from_.startswith(softphone.CLIENT_PREFIX) and call_sid:
        return await softphone.agent_call(request, form)
    if not call_sid or not to:
        metrics.callback("incoming-call", "ignored")
        log.warning(
            "voice webhook without CallSid/To; rejecting the call", extra=ids(call=call_sid)
        )
        return twiml.reject()
    incoming = await store.create_session(
        request.app.state.scripts, call_sid=call_sid, from_=from_, to=to
    )
    outcome, sid = incoming.outcome, incoming.sid
    metrics.callback("incoming-call", outcome)
    if sid is None:
        log.warning(
            "incoming call %s to %s: not one of our numbers; rejected",
            call_sid,
            to,
            extra=ids(call=call_sid),
        )
        return twiml.reject()
    log.info(
        "incoming call %s from %s to %s: session %s (%s)",
        call_sid,
        from_,
        to,
        sid,
        outcome,
        extra=ids(sid, call=call_sid),
    )
    settings = request.app.state.settings
    if incoming.queue_id is not None:
        return twiml.wait_in_conference(sid, settings.public_base_url, settings.hold_music_url)
    return twiml.join_conference(sid, settings.public_base_url, customer=True)


async def conference_status(request: Request) -> Response:
    form = await signed_form(request)
    sid, event = form.get("FriendlyName", ""), form.get("StatusCallbackEvent", "")
    if not sid or not event:
        metrics.callback(event, "ignored")
        log.info("conference callback without FriendlyName/StatusCallbackEvent ignored")
        return _ack()
    outcome = await store.conference_event(
        request.app.state.scripts,
        sid=sid,
        event=event,
        conference_sid=form.get("ConferenceSid", ""),
        call_sid=form.get("CallSid", ""),
        label=form.get("ParticipantLabel", ""),
        seq=form.get("SequenceNumber", ""),
        token=request.headers.get(IDEMPOTENCY_HEADER, ""),
    )
    metrics.callback(event, outcome)
    if outcome.startswith("unknown"):
        log.info(
            "conference callback %s for %s: %s; acknowledged",
            event,
            sid,
            outcome,
            extra=ids(sid, form.get("ParticipantLabel"), form.get("CallSid")),
        )
    return _ack()


async def call_status(request: Request) -> Response:
    form = await signed_form(request)
    sid = request.query_params.get("session", "")
    mid = request.query_params.get("member", "")
    status = form.get("CallStatus", "")
    if not sid or not mid or not status:
        metrics.callback(status, "ignored")
        log.info("call-status callback without session/member/CallStatus ignored")
        return _ack()
    outcome = await store.call_event(
        request.app.state.scripts,
        sid=sid,
        mid=mid,
        status=status,
        call_sid=form.get("CallSid", ""),
        seq=form.get("SequenceNumber", ""),
        token=request.headers.get(IDEMPOTENCY_HEADER, ""),
    )
    metrics.callback(status, outcome)
    if outcome == "unknown":
        log.info(
            "call-status %s for unknown member %s/%s; acknowledged",
            status,
            sid,
            mid,
            extra=ids(sid, mid, form.get("CallSid")),
        )
    return _ack()


routes = [  # busiest first: every participant's call reports each step of its life
    Route("/twilio/call-status", call_status, methods=["POST"]),
    Route("/twilio/conference-status", conference_status, methods=["POST"]),
    Route("/twilio/voice", voice, methods=["POST"]),
]
