"""The dial job: add one invited member to its session's Twilio conference.

Runs in a long-lived RQ worker. It may run more than once for a member (RQ
retries, a worker killed mid-dial), so it is safe to repeat: the member is
claimed in Redis first, a member with a call leg is never dialled again (the
leg's own status callbacks, addressed to the session and member, record its
CallSid and its end even when the create's answer was lost), and a repeated
attempt asks Twilio for a live participant labelled with the member id before
it dials, then for an ended call placed for it (Twilio keeps ended calls in its
Calls list, not in the participant list): see `find_ended_call` for the rule.

A member removed while a dial was under way is not dialled again; its leg,
if Twilio placed one, is found and handed to the control job to end.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from rq import get_current_job
from twilio.base.exceptions import TwilioRestException
from twilio.rest.api.v2010.account.call import CallInstance

from orchestrator import callback_urls, keys, metrics, store
from orchestrator.logs import ids
from orchestrator.phone import display
from orchestrator.twilio_rest import TwilioUnreachable
from workers.conference import find_participant
from workers.context import Context, context

log = logging.getLogger("orchestrator.dial")

RING_TIMEOUT_SECONDS = 30
# How far before the first attempt (Redis's clock) a call Twilio lists may have started and
# still be that attempt's: Twilio's clock and ours differ by this much at most.
CLOCK_SLACK_SECONDS = 60
# Calls a retry reads from Twilio's Calls list (one page): only calls to this member's
# address, from its caller id, started since its first attempt.
CALLS_LOOKUP_LIMIT = 20
# Call statuses after which Twilio does nothing more with a call.
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# The rate-limit wait may take this share of the job's timeout (see workers.context).
LIMITER_SHARE = 0.2


class TransientDialError(Exception):
    """Twilio could not take the request now (429, 5xx, network); RQ retries with backoff."""


# Why a claimed member was not dialled (begin_dial.lua's answers), in words for the log.
SKIPPED = {
    "missing": "it no longer exists (its session expired)",
    "final": "it has already ended",
    "dialled": "it already has a call, placed by an earlier attempt",
    "removed": "it was removed before it was dialled",
    "ended": "the session has ended",
    "nocaller": "no caller id to dial from (no session number, no DEFAULT_CALLER_ID)",
}


def _name(to: str) -> str:
    return to if to.startswith("client:") else display(to)


def _who(to: str) -> str:
    """A member as the worker's log names it: its number (E.164), or its user."""
    return f"user {to.removeprefix('client:')}" if to.startswith("client:") else to


def _who_of(ctx: Context, session_id: str, member_id: str) -> str:
    """The same for a member whose address the dial did not read (the rare paths only:
    it costs a Redis read)."""
    identity = ctx.redis.hget(keys.member(session_id, member_id), "identity")
    if not identity:
        return f"member {member_id}"
    identity = identity.decode() if isinstance(identity, bytes) else identity
    return identity if identity.startswith("+") else f"user {identity}"


def _last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def _outcome(outcome: str, twilio_code: object = None) -> str:
    """Count how an attempt ended (when it was not handed back for a retry)."""
    metrics.DIALS.labels(outcome, "" if twilio_code is None else str(twilio_code)).inc()
    return outcome


def _retry(reason: str, message: str) -> TransientDialError:
    metrics.DIAL_RETRIES.labels(reason).inc()
    return TransientDialError(message)


def _dispatched() -> None:
    """Invite to Twilio's answer: the job was made with the member (its created_at, which
    RQ keeps across retries, is the member's dateCreated)."""
    job = get_current_job()
    if job is not None and job.created_at is not None:
        metrics.DISPATCH.observe(max(0.0, time.time() - job.created_at.timestamp()))


def dial_member(session_id: str, member_id: str) -> str:
    """RQ entry point. Returns what happened, for the job's result and the logs."""
    ctx = context()
    started = time.monotonic()
    timeout = ctx.settings.dial_job_timeout
    settings = ctx.settings
    claim = store.begin_dial(
        ctx.redis, ctx.scripts, session_id, member_id, settings.default_caller_id, timeout + 1,
        settings.redis_min_replicas, settings.redis_wait_timeout_ms,
    )  # fmt: skip
    fields = ids(session_id, member_id)
    if claim == "unconfirmed":
        reason = f"fewer than {settings.redis_min_replicas} Redis replica(s) confirmed the dial"
        return _transient(ctx, session_id, member_id, "", reason, "replication")
    if claim == "busy":
        # Another run holds the member (its lease outlives its timeout): let it finish.
        if _last_attempt():
            log.warning(
                "left dialling %s in session %s to the attempt in progress",
                _who_of(ctx, session_id, member_id),
                session_id,
                extra=fields,
            )
            return _outcome(claim)
        raise _retry("busy", "another attempt is dialling this member")
    if isinstance(claim, str):
        log.info(
            "did not dial %s in session %s: %s",
            _who_of(ctx, session_id, member_id),
            session_id,
            SKIPPED.get(claim, claim),
            extra=fields,
        )
        # "dialled": an earlier attempt's leg, whose callbacks told us its CallSid.
        _outcome("reconciled" if claim == "dialled" else claim)
        return claim
    if claim.removed:
        return _removed_while_dialling(ctx, session_id, member_id, claim.to)
    if claim.attempt > 1:
        # An earlier attempt may have been made at Twilio without our hearing of it.
        try:
            found = find_participant(ctx, session_id, member_id)
        except (TwilioRestException, TwilioUnreachable) as exc:
            # Not knowing whether the member is already dialled, dialling could call twice.
            reason = f"looking for an earlier dial failed: {_describe(exc)}"
            return _transient(ctx, session_id, member_id, claim.to, reason, "lookup", exc)
        if found is not None:
            what = f"found {_who(claim.to)} in session {session_id} already dialled; recorded"
            _record_found(ctx, session_id, member_id, found, what)
            return _outcome("reconciled")
        try:
            ended = find_ended_call(ctx, session_id, member_id, claim.to, claim.from_)
        except (TwilioRestException, TwilioUnreachable) as exc:
            reason = f"looking for an earlier dial's call failed: {_describe(exc)}"
            return _transient(ctx, session_id, member_id, claim.to, reason, "lookup", exc)
        if ended is not None:
            _record_ended_call(ctx, session_id, member_id, claim.to, ended)
            return _outcome("reconciled")
    try:
        if not ctx.limiter.acquire(deadline=started + timeout * LIMITER_SHARE):
            reason = "dial rate limit (TWILIO_CPS)"
            return _transient(ctx, session_id, member_id, claim.to, reason, "rate-limit")
        public = ctx.settings.public_base_url
        waiting: dict[str, object] = {}
        if claim.wait_music:
            # The customer of a progressive dial waits for a queue's agent: hold music
            # (Twilio's own without HOLD_MUSIC_URL) until the agent joins and starts it.
            waiting = {"start_conference_on_enter": False}
            if ctx.settings.hold_music_url:
                waiting.update(wait_url=ctx.settings.hold_music_url, wait_method="GET")
        participant = ctx.twilio.api.v2010.account.conferences(session_id).participants.create(
            **waiting,
            from_=claim.from_,
            to=claim.to,
            label=member_id,
            timeout=claim.ring_timeout or RING_TIMEOUT_SECONDS,
            early_media=True,
            end_conference_on_exit=False,
            status_callback=callback_urls.call_status(public, session_id, member_id),
            status_callback_method="POST",
            status_callback_event=list(callback_urls.CALL_EVENTS),
            conference_status_callback=callback_urls.conference_status(public),
            conference_status_callback_method="POST",
            conference_status_callback_event=list(callback_urls.CONFERENCE_EVENTS),
        )
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            reason = f"Twilio {exc.status}: {exc.msg}"
            return _transient(ctx, session_id, member_id, claim.to, reason, "twilio", exc)
        message = f"Could not dial {_name(claim.to)}: {exc.msg} (Twilio error {exc.code})"
        store.fail_dial(ctx.redis, ctx.scripts, session_id, member_id, message)
        log.warning(
            "Twilio refused to dial %s in session %s: %s (Twilio error %s)",
            _who(claim.to),
            session_id,
            exc.msg,
            exc.code,
            extra=fields,
        )
        return _outcome("rejected", exc.code)
    except TwilioUnreachable as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return _transient(ctx, session_id, member_id, claim.to, reason, "network")
    _dispatched()
    store.record_dial(
        ctx.redis,
        ctx.scripts,
        session_id,
        member_id,
        participant.call_sid,
        participant.conference_sid or "",
    )
    log.info(
        "dialled %s in session %s: call %s",
        _who(claim.to),
        session_id,
        participant.call_sid,
        extra=ids(session_id, member_id, participant.call_sid),
    )
    return _outcome("dialled")


def _record_found(ctx: Context, session_id: str, member_id: str, found, what: str) -> None:
    """Record the leg an earlier attempt placed (found by its label at Twilio); `what`
    says what that means, the call's sid follows it in the log line."""
    store.record_dial(
        ctx.redis, ctx.scripts, session_id, member_id, found.call_sid, found.conference_sid
    )
    log.info("%s: call %s", what, found.call_sid, extra=ids(session_id, member_id, found.call_sid))


def find_ended_call(
    ctx: Context, session_id: str, member_id: str, to: str, from_: str
) -> CallInstance | None:
    """The call an earlier attempt placed for this member, from Twilio's Calls list, or None.

    Twilio forgets a participant whose call ended, but keeps the call. A call carries no
    label nor conference, so the rule that ties one to this member is: Twilio lists it
    with `To` = the member's address, `From` = the caller id every attempt uses, started
    (`StartTime>`) and created no earlier than the first attempt (`_dialAt`, less
    CLOCK_SLACK_SECONDS for the clocks' difference), placed through the API
    (`outbound-api`, no parent call), and no member holds its CallSid (a call the service
    knows of is another member's: a create answered, or a callback received). Of several,
    the first created is this member's: its attempt was the first to dial. A call still
    live is not looked for here: it is a participant, found by its label first."""
    first = ctx.redis.hget(keys.member(session_id, member_id), "_dialAt")
    if not first:
        return None
    since = datetime.fromtimestamp(float(first), UTC) - timedelta(seconds=CLOCK_SLACK_SECONDS)
    calls = ctx.twilio.api.v2010.account.calls.list(
        to=to, from_=from_, start_time_after=since, limit=CALLS_LOOKUP_LIMIT
    )
    candidates = [
        call
        for call in calls
        if call.direction == "outbound-api"
        and not call.parent_call_sid
        and call.date_created is not None
        and call.date_created >= since
        and not ctx.redis.exists(keys.call(call.sid))
    ]
    return min(candidates, key=lambda call: call.date_created, default=None)


def _record_ended_call(
    ctx: Context, session_id: str, member_id: str, to: str, call: CallInstance
) -> None:
    """Record the call an earlier attempt placed, found in the Calls list, and apply the
    status Twilio lists for it as its lost callbacks would have: the member ends as that
    call ended, with its CallSid, and is not dialled again."""
    store.record_dial(ctx.redis, ctx.scripts, session_id, member_id, call.sid, "")
    if call.status in FINAL_CALL_STATUSES:
        store.settle_found_call(
            ctx.redis, ctx.scripts, session_id, member_id, call.sid, call.status
        )
    log.info(
        "found %s in session %s already dialled (Twilio lists the call %s); recorded: call %s",
        _who(to),
        session_id,
        call.status,
        call.sid,
        extra=ids(session_id, member_id, call.sid),
    )


def _removed_while_dialling(ctx: Context, session_id: str, member_id: str, to: str) -> str:
    """Removed while an earlier attempt was under way: dial nobody, but find the leg that
    attempt may have placed, so that the control job ends it."""
    try:
        found = find_participant(ctx, session_id, member_id)
    except (TwilioRestException, TwilioUnreachable) as exc:
        if not _last_attempt():
            reason = f"looking for an earlier dial failed: {_describe(exc)}"
            raise _retry("lookup", reason) from exc
        found = None  # any leg it placed still reports its CallSid through its own callbacks
    if found is not None:
        what = f"{_who(to)} was removed from session {session_id} while dialled; ending the call"
        _record_found(ctx, session_id, member_id, found, what)
        return _outcome("removed")
    store.fail_dial(
        ctx.redis, ctx.scripts, session_id, member_id, f"Not dialled {_name(to)}: removed"
    )
    return _outcome("removed")


def _describe(exc: Exception) -> str:
    if isinstance(exc, TwilioRestException):
        return f"Twilio {exc.status}: {exc.msg} (Twilio error {exc.code})"
    return f"{type(exc).__name__}: {exc}"


def _transient(
    ctx: Context,
    session_id: str,
    member_id: str,
    to: str,
    reason: str,
    kind: str,
    exc: Exception | None = None,
) -> str:
    """Retry later through RQ, or end the member with a clear log once retries run out.
    `kind` is the retry's reason for the metrics; `exc` Twilio's error, if it was one."""
    store.release_dial(ctx.redis, session_id, member_id)
    fields = ids(session_id, member_id)
    if _last_attempt():
        who = _name(to) if to else "the member"
        cause = "Redis replicas unavailable" if kind == "replication" else "Twilio unavailable"
        message = f"Could not dial {who}: {cause} after retries ({reason})"
        store.fail_dial(ctx.redis, ctx.scripts, session_id, member_id, message)
        log.error(
            "gave up dialling %s in session %s: %s after retries (%s)",
            _who(to) if to else _who_of(ctx, session_id, member_id),
            session_id,
            cause,
            reason,
            extra=fields,
        )
        code = exc.code if isinstance(exc, TwilioRestException) else None
        return _outcome("gave-up", code)
    log.warning(
        "could not dial %s in session %s yet: %s; will retry",
        _who(to) if to else _who_of(ctx, session_id, member_id),
        session_id,
        reason,
        extra=fields,
    )
    raise _retry(kind, reason)


def dial_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: once no retry follows, the member ends with a log entry.

    Covers what dial_member cannot: an unexpected exception, or a worker killed
    mid-job whose abandoned job has no retries left.
    """
    if job.retries_left:
        return
    session_id, member_id = job.args
    ctx = context()
    reason = exc_type.__name__ if exc_type else "worker failure"
    who = _who_of(ctx, session_id, member_id)
    message = f"Could not dial {who}: the dial job failed ({reason})"
    if store.fail_dial(ctx.redis, ctx.scripts, session_id, member_id, message) == "ended":
        _outcome("failed")
        log.error(
            "gave up dialling %s in session %s: the dial job failed (%s)",
            who,
            session_id,
            reason,
            extra=ids(session_id, member_id),
        )
