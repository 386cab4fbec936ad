"""Finding a session's conference and its participants at Twilio, and ending legs.

Twilio takes a conference's friendly name (the session id) only when a
participant is created; every other participant request names the conference by
its CF sid (a name there is refused with 405 / 20004). A session learns its sid
from Twilio's callbacks and dials; until then Twilio's list by name finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from twilio.base.exceptions import TwilioRestException

from orchestrator import store
from workers.context import Context

# A session has one live conference; older, completed ones of the same name are skipped.
LOOKUP_LIMIT = 20


def conference_sids(ctx: Context, session_id: str) -> Iterator[str]:
    """The CF sids the session's live conference may have, most likely first: the one the
    session learnt from Twilio, then any conference Twilio lists under the session's name
    that has not completed."""
    known = store.conference_sid(ctx.redis, session_id)
    if known:
        yield known
    conferences = ctx.twilio.api.v2010.account.conferences
    for conference in conferences.list(friendly_name=session_id, limit=LOOKUP_LIMIT):
        if conference.sid != known and conference.status != "completed":
            yield conference.sid


def find_participant(ctx: Context, session_id: str, label_or_call_sid: str):
    """The live participant with that label (our member id) or CallSid, or None.

    Twilio lists only participants whose call is still up, so a leg that has ended is
    not found here; its status callbacks will have recorded it."""
    conferences = ctx.twilio.api.v2010.account.conferences
    for conference_sid in conference_sids(ctx, session_id):
        try:
            return conferences(conference_sid).participants(label_or_call_sid).fetch()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
    return None


def end_conference(ctx: Context, session_id: str) -> bool:
    """End the session's live conference (every participant leaves); False if none.

    Only a conference still running is updated: Twilio ends one that the last
    participant (or the caller, who ends it on exit) has left by itself."""
    ended = False
    for conference_sid in list(conference_sids(ctx, session_id)):
        conference = ctx.twilio.api.v2010.account.conferences(conference_sid)
        try:
            if conference.fetch().status == "completed":
                continue
            conference.update(status="completed")
            ended = True
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
    return ended


def end_leg(
    ctx: Context,
    session_id: str,
    call_sid: str,
    ringing: bool = False,
    still_wanted: Callable[[], bool] | None = None,
) -> str:
    """Hang one member's leg up, as Twilio allows for its state: a leg still queued or
    ringing is cancelled (no phone keeps ringing), one in the call leaves the conference.
    A leg last known `ringing` is cancelled straight away, without asking its status
    first (a queue's withdrawn offers: one request each, not two); Twilio's answer says
    whether it was answered meanwhile. Returns the call's status as Twilio last reported
    it."""
    calls = ctx.twilio.api.v2010.account.calls
    try:
        call = calls(call_sid).update(status="canceled") if ringing else calls(call_sid).fetch()
    except TwilioRestException as exc:
        if exc.status == 404:
            return "unknown"
        raise
    if call.status in ("queued", "ringing"):
        call = calls(call_sid).update(status="canceled")
        if call.status != "in-progress":  # answered just before the cancel landed
            return call.status
    if call.status != "in-progress":
        return call.status
    if still_wanted is not None and not still_wanted():
        # Answered meanwhile, and the session no longer wants the leg gone (a queue's
        # offer answered as its ring round ended keeps the call: docs/queues.md).
        return "kept"
    participant = find_participant(ctx, session_id, call_sid)
    if participant is not None:
        conference = ctx.twilio.api.v2010.account.conferences(participant.conference_sid)
        try:
            conference.participants(call_sid).delete()
            return "completed"
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
    # Answered but in no conference (it landed between two): hang the call itself up.
    return calls(call_sid).update(status="completed").status
