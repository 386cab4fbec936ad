"""The control job: make Twilio match what a session's state asks of it.

The scripts enqueue one (`ctl-{session id}-{n}`) with every change that needs
Twilio work: a member removed, held, muted or unheld, a session ended. The job
is level-triggered: it reads the session as it stands and does whatever is
still to do, so running it twice, late, or after a newer change does no harm,
and a worker killed mid-job loses nothing (RQ runs it again). What Twilio then
does comes back through its callbacks, which move the members' states.

Twilio is addressed as it requires: a leg is cancelled only while queued or
ringing, a participant in the call is removed through its conference's CF sid,
and a conference is ended by its CF sid.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial

from rq import get_current_job
from rq.job import Job
from twilio.base.exceptions import TwilioRestException

from orchestrator import metrics, store
from orchestrator.jobs import session_of_control_job
from orchestrator.logs import ids
from orchestrator.twilio_rest import TwilioUnreachable
from workers.conference import end_conference, end_leg, find_participant
from workers.context import Context, context

log = logging.getLogger("orchestrator.control")

# Legs a job ends at the same time, at most (a ring-all's offers, a conference's legs).
LEG_CONCURRENCY = 16
_LEGS = ThreadPoolExecutor(max_workers=LEG_CONCURRENCY, thread_name_prefix="end-leg")


# What end_leg's answer (the call's status at Twilio) means, for the log.
LEG_ENDED = {
    "completed": "left the call",
    "canceled": "stopped ringing",
    "unknown": "Twilio no longer knows the call",
    "busy": "the call had ended (busy)",
    "no-answer": "the call had ended (no answer)",
    "failed": "the call had ended (failed)",
    "kept": "it was answered meanwhile and is wanted again; kept",
}


class TransientControlError(Exception):
    """Twilio could not take a request now (429, 5xx, network); RQ retries with backoff."""


def settle() -> str:
    """RQ entry point (the job's id names the session). Returns what it did."""
    job = get_current_job()
    assert job is not None
    sid = session_of_control_job(job.id)
    ctx = context()
    try:
        outcome = _settle(ctx, sid)
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            _retried(job)
            raise TransientControlError(f"Twilio {exc.status}: {exc.msg}") from exc
        # Twilio refused: asking again would not change its answer. Say so where the
        # agent looks; the next change to the session tries again.
        message = f"Twilio refused a change to the call: {exc.msg} (Twilio error {exc.code})"
        store.log_entry(ctx.redis, ctx.scripts, sid, message)
        log.warning("session %s: %s", sid, message, extra=ids(sid))
        outcome = "refused"
    except TwilioUnreachable as exc:
        _retried(job)
        raise TransientControlError(f"{type(exc).__name__}: {exc}") from exc
    metrics.CONTROL_JOBS.labels(outcome).inc()
    return outcome


def _retried(job: Job) -> None:
    """Count a run RQ will retry; one with no retry left is counted by settle_failed."""
    if job.retries_left:
        metrics.CONTROL_JOBS.labels("retried").inc()


def _settle(ctx: Context, sid: str) -> str:
    state = store.control_state(ctx.redis, sid)
    if state is None:
        return "gone"
    # One line for each thing done, in words, naming the member as people know it (its
    # number, or the user's name); the ids are the lines' fields (LOG_FORMAT=json).
    done = 0
    if state.ended and end_conference(ctx, sid):
        log.info("ended the conference of session %s", sid, extra=ids(sid))
        done += 1
    live = [m for m in state.members if m.rank < 3 and m.call_sid]
    ending = [m for m in live if state.ended or m.removed]
    verb = "hung up" if state.ended else "removed"
    for member, status in _end_legs(ctx, sid, ending):
        log.info(
            "%s %s in session %s: %s",
            verb,
            member.name,
            sid,
            LEG_ENDED.get(status, f"the call is {status}"),
            extra=ids(sid, member.id, member.call_sid),
        )
        done += 1
    for member in live:
        fields = ids(sid, member.id, member.call_sid)
        if member in ending:
            continue
        if member.rank == 2:
            for change in _apply_wishes(ctx, sid, member):
                log.info("%s in session %s", change, sid, extra=fields)
                done += 1
    if not done:
        log.debug("session %s: nothing to change at Twilio", sid, extra=ids(sid))
    return "settled"


def _end_legs(
    ctx: Context, sid: str, members: list[store.ControlMember]
) -> list[tuple[store.ControlMember, str]]:
    """End the legs of `members` at Twilio, at the same time: a ring-all's withdrawn
    offers stop ringing together, not one request after another (docs/queues.md). Each
    leg's status, in order; the first error is raised once every leg was tried, so a
    retry does what is still to do."""

    def args(m: store.ControlMember) -> tuple[object, ...]:
        # A leg that was ringing when the state was read may have been answered and kept
        # since (a queue's offer answered as its ring round ended): asked again then.
        wanted = partial(store.member_removed, ctx.redis, sid, m.id) if m.removed else None
        return (ctx, sid, m.call_sid, m.rank == 1, wanted)

    if len(members) <= 1:
        return [(m, end_leg(*args(m))) for m in members]
    futures = [_LEGS.submit(end_leg, *args(m)) for m in members]
    wait(futures)
    return [(m, f.result()) for m, f in zip(members, futures, strict=True)]


def _apply_wishes(ctx: Context, sid: str, member: store.ControlMember) -> list[str]:
    """Hold and mute as asked through the API, where Twilio does not show them yet; what
    was done, in words ("put +14155550123 on hold")."""
    changes: dict[str, object] = {}
    if member.want_hold is not None and member.want_hold != member.hold:
        changes["hold"] = member.want_hold
        if member.want_hold and ctx.settings.hold_music_url:
            changes["hold_url"] = ctx.settings.hold_music_url
            changes["hold_method"] = "GET"
    if member.want_muted is not None and member.want_muted != member.muted:
        changes["muted"] = member.want_muted
    if not changes:
        return []
    participant = find_participant(ctx, sid, member.call_sid)
    if participant is None:  # the leg ended meanwhile; its callbacks tell the rest
        return []
    conference = ctx.twilio.api.v2010.account.conferences(participant.conference_sid)
    try:
        conference.participants(member.call_sid).update(**changes)
    except TwilioRestException as exc:
        if exc.status != 404:
            raise
        return []
    said = []
    if "hold" in changes:
        said.append(
            f"put {member.name} on hold" if changes["hold"] else f"took {member.name} off hold"
        )
    if "muted" in changes:
        said.append(f"muted {member.name}" if changes["muted"] else f"unmuted {member.name}")
    return said


def settle_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: once no retry follows, the session's log says what failed."""
    if job.retries_left:
        return
    sid = session_of_control_job(job.id)
    reason = f"{exc_type.__name__}: {exc_value}" if exc_type else "worker failure"
    message = f"Twilio did not take a change to the call: {reason}"
    ctx = context()
    store.log_entry(ctx.redis, ctx.scripts, sid, message)
    metrics.CONTROL_JOBS.labels("failed").inc()
    log.error("session %s: %s", sid, message, extra=ids(sid))
