"""Call and conference state, and the playback that turns API requests into Twilio events.

The REST layer (``emulator.rest``) only validates and renders; everything that happens to a
call after the API answered lives here, in ``Switchboard``. All state is owned by the server's
event loop: handlers and playback tasks mutate it synchronously between awaits, so no locks
are needed and every event is emitted in the order the state changed.

What the app sees, and in which order, is the point of the emulator:

* a dialled participant's call-progress callbacks (``initiated``, ``ringing``, ``answered``,
  ``completed``) go to its ``StatusCallback``, filtered by ``StatusCallbackEvent`` (default:
  ``completed`` only; ``completed`` covers every final status);
* every conference event (``conference-start``/``-end`` and each participant's ``-join``/
  ``-leave``/``-mute``/``-unmute``/``-hold``/``-unhold``) goes to the conference's status
  callback, which is the one its first participant set (the incoming caller's TwiML
  ``statusCallback`` or the first create's ``ConferenceStatusCallback``), filtered by that
  participant's event list; later participants' values are ignored, as on Twilio;
* answering emits ``in-progress``, ``participant-join`` and, for the first participant with
  ``StartConferenceOnEnter``, ``conference-start``; hanging up emits ``participant-leave``,
  ``completed`` and, when nobody is left (or an ``EndConferenceOnExit`` participant left),
  ``conference-end`` after every other participant's ``participant-leave``;
* a dialled participant that never joins (busy, no answer, failed, cancelled) gets its final
  call status and then ``participant-leave`` with ``ReasonParticipantLeft`` saying why.

Callbacks about one call are delivered strictly in order; different calls progress
concurrently (see ``emulator.callbacks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from emulator.callbacks import CallbackDispatcher, Delivery, ParamValue
from emulator.numbers import Outcome, outcome_for
from emulator.softphones import Softphones
from emulator.twiml import ConferenceTwiml, Hangup, Reject, Say, TwimlError, Verb, parse_verbs

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"

#: Call statuses after which nothing more happens to a call.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})

#: Call-progress event names accepted in ``StatusCallbackEvent``.
CALL_PROGRESS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})

#: ``ReasonParticipantLeft`` values of ``participant-leave``.
LEFT_HUNG_UP = "participant_hung_up"
LEFT_VIA_API = "participant_updated_via_api"
LEFT_CONFERENCE_ENDED_VIA_API = "conference_ended_via_api"
LEFT_MODERATOR_ENDED = "moderator_ended_conference"
LEFT_ADD_FAILED = "participant_add_failed"

#: ``ConferenceStatusCallbackEvent`` / ``statusCallbackEvent`` names and the events they enable.
CONFERENCE_EVENT_NAMES: dict[str, tuple[str, ...]] = {
    "start": ("conference-start",),
    "end": ("conference-end",),
    "join": ("participant-join",),
    "leave": ("participant-leave",),
    "mute": ("participant-mute", "participant-unmute"),
    "hold": ("participant-hold", "participant-unhold"),
}


def new_sid(prefix: str) -> str:
    """A Twilio-looking sid: two-letter prefix and 32 lowercase hex digits."""
    return prefix + uuid.uuid4().hex


def utcnow() -> datetime:
    """Current time in UTC, truncated to seconds like every Twilio timestamp."""
    return datetime.now(UTC).replace(microsecond=0)


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format, e.g. ``Sat, 28 Nov 2026 04:10:00 +0000``."""
    return None if moment is None else format_datetime(moment)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _split_events(values: Iterable[str]) -> list[str]:
    # The client sends one form value per event; TwiML and hand-written requests use spaces.
    return [name for value in values for name in value.replace(",", " ").split()]


@dataclass(frozen=True)
class Subscription:
    """Where and for which events one party wants webhooks."""

    url: str | None = None
    method: str = "POST"
    events: frozenset[str] = frozenset()

    def wants(self, event: str) -> bool:
        """Whether a webhook for ``event`` should be sent at all."""
        return bool(self.url) and event in self.events


def call_progress_subscription(
    url: str | None, method: str | None, events: Iterable[str]
) -> Subscription:
    """``StatusCallback*`` parameters; without events Twilio only reports ``completed``."""
    names = {name.lower() for name in _split_events(events)} & CALL_PROGRESS_EVENTS
    return Subscription(url or None, (method or "POST").upper(), frozenset(names or {"completed"}))


def conference_subscription(
    url: str | None, method: str | None, events: Iterable[str]
) -> Subscription:
    """``ConferenceStatusCallback*`` / TwiML ``statusCallback*``; no events means none sent."""
    enabled = {
        event
        for name in _split_events(events)
        for event in CONFERENCE_EVENT_NAMES.get(name.lower(), ())
    }
    return Subscription(url or None, (method or "POST").upper(), frozenset(enabled))


@dataclass(eq=False)
class Conference:
    """A conference room, from its first participant until it ends."""

    sid: str
    friendly_name: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    status: str = "init"  # init -> in-progress -> completed
    started: bool = False
    # Set once, by the participant that brought the conference into being: Twilio uses only
    # the first participant's ConferenceStatusCallback for the whole conference.
    callback: Subscription = field(default_factory=Subscription)
    calls: list[Call] = field(default_factory=list)
    sequence: int = 0
    reason_ended: str | None = None
    call_sid_ending: str | None = None

    @property
    def live(self) -> bool:
        """Not completed: it can still be joined (by sid or, on create, by friendly name)."""
        return self.status != "completed"

    def participants(self) -> list[Call]:
        """Current participants (connecting or connected), like Twilio's Participants list.

        Twilio forgets a participant once its call ended, and a completed conference has none.
        """
        if not self.live:
            return []
        return [call for call in self.calls if not call.ended]

    def joined(self) -> list[Call]:
        """Participants actually in the room (answered and joined)."""
        return [call for call in self.calls if call.joined]


@dataclass(eq=False)
class Call:
    """One call leg: a dialled participant (``outbound-api``) or an incoming caller."""

    sid: str
    to: str
    from_: str
    direction: str  # "outbound-api" or "inbound"
    label: str | None = None
    status: str = "queued"
    status_callback: Subscription = field(default_factory=Subscription)
    # The ConferenceStatusCallback this leg asked for; it counts only if the leg is the
    # conference's first participant (see ``Conference.callback``).
    conference_callback: Subscription = field(default_factory=Subscription)
    conference: Conference | None = None
    muted: bool = False
    hold: bool = False
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    coaching: bool = False
    call_sid_to_coach: str | None = None
    # Participant parameters kept only to be shown (no audio here): HoldUrl, WaitUrl, ...
    settings: dict[str, str] = field(default_factory=dict)
    dialled: bool = False  # Twilio started placing the call: the participant is "connecting"
    joined: bool = False
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    # When Twilio started the call (dialled it, or it came in): the Call's ``start_time``,
    # set for a call that was never answered too (busy, no-answer), as on Twilio.
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    sequence: int = 0
    history: list[Delivery] = field(default_factory=list)
    # REST requests about this call (create, fetch, update, delete of the call or its
    # participant), in order: {operation, time (time.time() when received), params}.
    requests: list[dict[str, object]] = field(default_factory=list)
    # What the caller of an inbound call heard (its TwiML's ``<Say>`` texts, in order).
    said: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        """The call reached a final status."""
        return self.status in FINAL_STATUSES

    @property
    def answered(self) -> bool:
        """The callee picked up at some point."""
        return self.answered_at is not None

    def duration_seconds(self) -> int:
        """Talk time, the ``CallDuration`` Twilio reports (0 when never answered)."""
        if self.answered_at is None:
            return 0
        end = self.ended_at or utcnow()
        return max(0, round((end - self.answered_at).total_seconds()))

    def touch(self) -> None:
        self.date_updated = utcnow()


@dataclass
class ParticipantUpdate:
    """What one participant update asks for; None (or absent) leaves a property as it is."""

    muted: bool | None = None
    hold: bool | None = None
    end_conference_on_exit: bool | None = None
    coaching: bool | None = None
    call_sid_to_coach: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


class IncomingCallError(Exception):
    """The voice app could not put an incoming caller into a conference (``call``, ended)."""

    def __init__(self, message: str, call: Call | None = None) -> None:
        super().__init__(message)
        self.call = call


class CoachingError(ValueError):
    """``Coaching``/``CallSidToCoach`` do not name a participant of the same conference."""


class Switchboard:
    """The emulated phone network: creates calls, plays them, and reports events."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        voice_url: str | None = None,
        ring_seconds: float = 0.2,
        no_answer_seconds: float = 1.0,
        dispatcher: CallbackDispatcher | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.voice_url = voice_url
        self.ring_seconds = ring_seconds
        self.no_answer_seconds = no_answer_seconds
        self.dispatcher = dispatcher or CallbackDispatcher(auth_token)
        #: Agents' registered softphones: what a ``client:`` callee does.
        self.softphones = Softphones()
        self.calls: dict[str, Call] = {}
        self.conferences: dict[str, Conference] = {}
        self.creates_total = 0
        self.creates_by_label: dict[str, int] = {}
        self.create_times: list[float] = []  # time.time() of each create, in order
        # Participant create requests that passed auth: faulted, refused or not.
        self.create_attempts = 0

    # ------------------------------------------------------------------ lookups

    def live_conference_named(self, name: str) -> Conference | None:
        """The non-completed conference called ``name``, if any (at most one exists)."""
        for conference in reversed(self.conferences.values()):
            if conference.live and conference.friendly_name == name:
                return conference
        return None

    def conference_by_sid(self, sid: str) -> Conference | None:
        """A conference by sid, in any state; Twilio looks conferences up by sid only."""
        return self.conferences.get(sid)

    def find_participant(self, conference: Conference, sid_or_label: str) -> Call | None:
        """A current participant by call sid or by label, as Twilio accepts either."""
        participants = conference.participants()
        for call in participants:
            if call.sid == sid_or_label:
                return call
        for call in reversed(participants):
            if call.label is not None and call.label == sid_or_label:
                return call
        return None

    def _conference_to_join(self, name: str, callback: Subscription) -> Conference:
        """The live conference called ``name``, or a new one whose callback is ``callback``."""
        conference = self.live_conference_named(name)
        if conference is None:
            conference = Conference(new_sid("CF"), name, callback=callback)
            self.conferences[conference.sid] = conference
        return conference

    @staticmethod
    def check_coaching(
        conference: Conference | None, coach: Call | None, coaching: bool, coachee_sid: str | None
    ) -> None:
        """Raise ``CoachingError`` unless coaching names another current participant.

        Twilio: ``coaching`` true needs ``call_sid_to_coach``, the call sid of a participant
        of the same conference (the only one who hears the coach).
        """
        if not coaching:
            return
        if coachee_sid is None:
            raise CoachingError("Coaching requires CallSidToCoach")
        participants = conference.participants() if conference is not None else []
        if not any(c.sid == coachee_sid and c is not coach for c in participants):
            raise CoachingError(
                f"CallSidToCoach {coachee_sid} is not a participant of this conference"
            )

    # ------------------------------------------------------------------ commands

    def dial(
        self,
        conference_ref: Conference | str,
        *,
        to: str,
        from_: str,
        label: str | None,
        status_callback: Subscription,
        conference_callback: Subscription,
        muted: bool = False,
        start_conference_on_enter: bool = True,
        end_conference_on_exit: bool = False,
        coaching: bool | None = None,
        call_sid_to_coach: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> Call:
        """Create a participant's outbound call (status ``queued``); see ``start_playback``.

        ``conference_ref`` is a live conference (the caller looked its sid up) or a friendly
        name; an unknown name creates the conference, as the Participants API does, and this
        participant's ``conference_callback`` becomes the conference's. Raises
        ``CoachingError`` (creating nothing) when coaching names no current participant.
        """
        if isinstance(conference_ref, Conference):
            conference: Conference | None = conference_ref
        else:
            conference = self.live_conference_named(conference_ref)
        if coaching is None:  # Twilio: false unless a call to coach is given
            coaching = call_sid_to_coach is not None
        self.check_coaching(conference, None, coaching, call_sid_to_coach)
        if conference is None:
            assert isinstance(conference_ref, str)
            conference = self._conference_to_join(conference_ref, conference_callback)
        call = Call(
            sid=new_sid("CA"),
            to=to,
            from_=from_,
            direction="outbound-api",
            label=label,
            status_callback=status_callback,
            conference_callback=conference_callback,
            conference=conference,
            muted=muted,
            start_conference_on_enter=start_conference_on_enter,
            end_conference_on_exit=end_conference_on_exit,
            coaching=coaching,
            call_sid_to_coach=call_sid_to_coach if coaching else None,
            settings=dict(settings or {}),
        )
        conference.calls.append(call)
        self.calls[call.sid] = call
        self.creates_total += 1
        self.create_times.append(time.time())
        if label is not None:
            self.creates_by_label[label] = self.creates_by_label.get(label, 0) + 1
        return call

    def start_playback(self, call: Call) -> None:
        """Start playing a dialled call in the background (after the 201 went out)."""
        if call.ended or call.task is not None or self.calls.get(call.sid) is not call:
            return  # already playing, over, or forgotten by a reset
        call.task = asyncio.get_running_loop().create_task(self._play(call))

    async def _play(self, call: Call) -> None:
        try:
            outcome = self.softphones.outcome_for(call.to, time.time()) or outcome_for(call.to)
            call.dialled = True
            call.started_at = utcnow()
            self._progress(call, "initiated", "initiated")
            if outcome is Outcome.FAILED:
                self._drop_unanswered(call, "failed", LEFT_ADD_FAILED)
                return
            call.status = "ringing"
            call.touch()
            self._progress(call, "ringing", "ringing")
            if outcome is Outcome.ANSWER:
                await asyncio.sleep(self.ring_seconds)
                self._answer(call)
                return
            if outcome is Outcome.BUSY:
                await asyncio.sleep(self.ring_seconds)
            else:
                await asyncio.sleep(self.no_answer_seconds)
            self._drop_unanswered(call, outcome.value, LEFT_ADD_FAILED)
        except asyncio.CancelledError:
            raise
        except Exception:  # one broken call must not stop the others
            logger.exception("playback of %s failed", call.sid)

    def callee_hangs_up(self, call: Call) -> None:
        """The far end hangs up (control endpoint): declining a ringing call means busy."""
        if call.ended:
            return
        if call.answered:
            self._hang_up(call, reason=LEFT_HUNG_UP, kicked=False)
        else:
            status = "busy" if call.direction == "outbound-api" else "canceled"
            self._drop_unanswered(call, status, LEFT_ADD_FAILED)

    def hang_up_via_api(self, call: Call) -> None:
        """``Calls`` update ``Status=completed`` or participant DELETE: end the call now.

        An answered call ends ``completed``; one still queued or ringing ends ``canceled``,
        the status Twilio gives every call the API stopped before it was answered.
        """
        if call.ended:
            return
        if call.answered:
            self._hang_up(call, reason=LEFT_VIA_API, kicked=True)
        else:
            self._drop_unanswered(call, "canceled", LEFT_VIA_API)

    def cancel_via_api(self, call: Call) -> bool:
        """``Calls`` update ``Status=canceled``: cancels a queued or ringing call only.

        Twilio's ``canceled`` "attempts to hang up a queued or ringing call"; an answered or
        ended call is left as it is. Returns whether the call was cancelled.
        """
        if call.ended or call.answered:
            return False
        self._drop_unanswered(call, "canceled", LEFT_VIA_API)
        return True

    def end_conference_via_api(self, conference: Conference) -> None:
        """Conference update ``Status=completed``: everyone leaves, then ``conference-end``."""
        if conference.live:
            self._end_conference(
                conference,
                reason="conference-ended-via-api",
                ending_call=None,
                leave_reason=LEFT_CONFERENCE_ENDED_VIA_API,
                cancel_pending=True,
            )

    def update_participant(self, call: Call, update: ParticipantUpdate) -> None:
        """Apply a participant update, all or nothing (``CoachingError`` changes nothing).

        Mute and hold events go out only for real changes of a joined participant. Like
        Twilio, a change of ``EndConferenceOnExit`` is ignored while the participant is on
        hold (after this update's ``Hold`` is applied).
        """
        coaching, coachee = call.coaching, call.call_sid_to_coach
        if update.call_sid_to_coach is not None:
            coaching, coachee = True, update.call_sid_to_coach
        if update.coaching is not None:
            coaching = update.coaching
        self.check_coaching(call.conference, call, coaching, coachee)
        conference = call.conference
        if update.muted is not None and update.muted != call.muted:
            call.muted = update.muted
            call.touch()
            if call.joined and conference is not None:
                event = "participant-mute" if update.muted else "participant-unmute"
                self._conference_event(conference, event, call)
        if update.hold is not None and update.hold != call.hold:
            call.hold = update.hold
            call.touch()
            if call.joined and conference is not None:
                event = "participant-hold" if update.hold else "participant-unhold"
                self._conference_event(conference, event, call)
        if update.end_conference_on_exit is not None and not call.hold:
            call.end_conference_on_exit = update.end_conference_on_exit
        call.coaching = coaching
        call.call_sid_to_coach = coachee if coaching else None
        call.settings.update(update.settings)
        call.touch()

    async def incoming(self, from_: str, to: str, voice_url: str) -> Call:
        """A customer calls in: ask the voice app for TwiML and follow it (``answer_inbound``).

        Raises ``IncomingCallError`` (the call ended) when the app is unreachable, answers
        non-2xx, or returns TwiML that puts the caller in no conference.
        """
        call = self._new_inbound(from_, to)
        await self.answer_inbound(call, voice_url)
        if call.conference is None:
            raise IncomingCallError("voice URL returned TwiML without <Dial><Conference>", call)
        return call

    async def client_call(
        self,
        identity: str,
        to: str,
        voice_url: str,
        method: str,
        application_sid: str,
        custom: dict[str, str],
        status_callback: Subscription,
    ) -> Call:
        """A softphone places a call (``device.connect({params})``) through its TwiML App.

        The App's voice URL gets Twilio's parameters (``From``/``Caller`` the softphone's
        ``client:<identity>``, ``ApplicationSid``) and ``custom`` as form fields; the call
        follows its TwiML whatever it says. Raises ``IncomingCallError`` (the call ended
        ``failed``) when the app is unreachable or answers non-2xx or no TwiML.
        """
        call = self._new_inbound(f"client:{identity}", to)
        call.status_callback = status_callback
        await self.answer_inbound(call, voice_url, method, application_sid, custom)
        return call

    def _new_inbound(self, from_: str, to: str) -> Call:
        call = Call(
            sid=new_sid("CA"),
            to=to,
            from_=from_,
            direction="inbound",
            status="ringing",
            started_at=utcnow(),
        )
        self.calls[call.sid] = call
        return call

    async def answer_inbound(
        self,
        call: Call,
        voice_url: str,
        method: str = "POST",
        application_sid: str | None = None,
        custom: dict[str, str] | None = None,
    ) -> None:
        """Ask ``voice_url`` (signed, its connection overrides applied) what to do with a
        ringing inbound call, and follow the TwiML (``_follow``).

        Raises ``IncomingCallError`` (after ending the call ``failed``) when the app is
        unreachable, answers non-2xx, or returns no TwiML; and when the call ended (hung up,
        or a reset) while the app was thinking.
        """
        # Custom parameters first: Twilio's own names are Twilio's to set.
        params: dict[str, ParamValue] = dict(custom or {})
        params.update({"AccountSid": self.account_sid, "ApiVersion": API_VERSION})
        if application_sid is not None:
            params["ApplicationSid"] = application_sid
        params.update(
            {
                "CallSid": call.sid,
                "CallStatus": "ringing",
                "Direction": "inbound",
                "From": call.from_,
                "To": call.to,
                "Called": call.to,
                "Caller": call.from_,
            }
        )
        delivery = await self.dispatcher.send(voice_url, params, method)
        call.history.append(delivery)
        if call.ended:  # hung up (or reset) while the app was thinking
            raise IncomingCallError("the call ended before the voice app answered", call)
        if not delivery.delivered:
            self._finish(call, "failed")
            raise IncomingCallError(f"voice URL {voice_url} unreachable: {delivery.error}", call)
        assert delivery.status is not None
        if not 200 <= delivery.status < 300:
            self._finish(call, "failed")
            raise IncomingCallError(f"voice URL {voice_url} answered HTTP {delivery.status}", call)
        try:
            verbs = parse_verbs(delivery.body, voice_url)
        except TwimlError as exc:
            self._finish(call, "failed")
            raise IncomingCallError(str(exc), call) from exc
        self._follow(call, verbs)

    def _follow(self, call: Call, verbs: list[Verb]) -> None:
        """Play an inbound call's TwiML: ``<Say>`` is recorded, a ``<Dial><Conference>``
        joins the room (the call stays there; verbs after it are not reached here),
        ``<Hangup>`` or the end of the document ends the call ``completed``. ``<Reject>``
        before anything answered the call ends it ``busy`` (``reason="busy"``) or
        ``no-answer`` (``rejected``, the default), as Twilio's ``<Reject>`` documents; later,
        the call was answered already and just ends ``completed``.
        """
        for verb in verbs:
            if isinstance(verb, Say):
                self._pick_up(call)
                call.said.append(verb.text)
            elif isinstance(verb, ConferenceTwiml):
                self._pick_up(call)
                self._enter(call, verb)
                return
            elif isinstance(verb, Hangup):
                break
            elif isinstance(verb, Reject):
                if not call.answered:
                    self._finish(call, "busy" if verb.reason == "busy" else "no-answer")
                    return
                break
        self._pick_up(call)
        self._finish(call, "completed")

    def _pick_up(self, call: Call) -> None:
        """Twilio answers an inbound call as soon as its TwiML does anything but reject it."""
        if call.answered:
            return
        call.status = "in-progress"
        call.answered_at = utcnow()
        call.touch()
        self._progress(call, "answered", "in-progress")

    def _enter(self, call: Call, twiml: ConferenceTwiml) -> None:
        """An answered inbound call joins the ``<Conference>`` its TwiML names."""
        call.label = twiml.participant_label
        call.muted = twiml.muted
        call.start_conference_on_enter = twiml.start_conference_on_enter
        call.end_conference_on_exit = twiml.end_conference_on_exit
        call.conference_callback = conference_subscription(
            twiml.status_callback, twiml.status_callback_method, twiml.status_callback_events
        )
        conference = self._conference_to_join(twiml.name, call.conference_callback)
        conference.calls.append(call)
        call.conference = conference
        call.touch()
        self._join(call)

    def reset(self) -> None:
        """Forget every call, conference and counter; pending callbacks are dropped."""
        for call in self.calls.values():
            if call.task is not None and not call.task.done():
                call.task.cancel()
        self.dispatcher.cancel_all()
        self.softphones.reset()
        self.calls.clear()
        self.conferences.clear()
        self.creates_total = 0
        self.creates_by_label.clear()
        self.create_times.clear()
        self.create_attempts = 0

    async def aclose(self) -> None:
        """Stop playback and webhook delivery (server shutdown)."""
        tasks = [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.aclose()

    # ------------------------------------------------------------------ state changes

    def _stop_playback(self, call: Call) -> None:
        task = call.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _answer(self, call: Call) -> None:
        call.status = "in-progress"
        call.answered_at = utcnow()
        call.touch()
        self._progress(call, "answered", "in-progress")
        conference = call.conference
        if conference is None or not conference.live:
            # The room ended while this call rang (its last member left): like Twilio, the
            # callee lands in a fresh conference of the same name.
            if conference is not None:
                conference.calls.remove(call)
            name = conference.friendly_name if conference is not None else call.sid
            conference = self._conference_to_join(name, call.conference_callback)
            conference.calls.append(call)
            call.conference = conference
        self._join(call)

    def _join(self, call: Call) -> None:
        conference = call.conference
        assert conference is not None
        call.joined = True
        conference.date_updated = utcnow()
        self._conference_event(conference, "participant-join", call)
        if not conference.started and call.start_conference_on_enter:
            conference.started = True
            conference.status = "in-progress"
            self._conference_event(conference, "conference-start", call, participant=False)

    def _finish(self, call: Call, status: str) -> None:
        self._stop_playback(call)
        call.status = status
        call.ended_at = utcnow()
        call.touch()
        self._progress(call, "completed", status)

    def _drop_unanswered(self, call: Call, status: str, reason: str) -> None:
        """A participant that never joined ends: its final status, then its leave."""
        self._finish(call, status)
        conference = call.conference
        if conference is not None and conference.live:
            self._leave_unjoined(conference, call, reason)
        self._settle(conference)

    def _leave_unjoined(self, conference: Conference, call: Call, reason: str) -> None:
        """``participant-leave`` for a participant whose call ended before it joined.

        Twilio reports the end of every participant it was asked to add, joined or not, with
        the call's final status; it comes after that status, so a listener that applies
        callbacks in order sees why the call ended before it sees the participant go.
        """
        self._conference_event(
            conference,
            "participant-leave",
            call,
            extra={"ParticipantCallStatus": call.status, "ReasonParticipantLeft": reason},
        )

    def _hang_up(self, call: Call, *, reason: str, kicked: bool) -> None:
        conference = call.conference
        was_joined = call.joined
        if was_joined and conference is not None:
            call.joined = False
            self._conference_event(
                conference,
                "participant-leave",
                call,
                extra={"ParticipantCallStatus": "completed", "ReasonParticipantLeft": reason},
            )
        self._finish(call, "completed")
        if conference is None or not conference.live:
            return
        if was_joined and conference.started:
            if call.end_conference_on_exit:
                suffix = "kicked" if kicked else "left"
                self._end_conference(
                    conference,
                    reason=f"participant-with-end-conference-on-exit-{suffix}",
                    ending_call=call,
                    leave_reason=LEFT_MODERATOR_ENDED,
                    cancel_pending=False,
                )
                return
            if not conference.joined():
                self._end_conference(
                    conference,
                    reason="last-participant-kicked" if kicked else "last-participant-left",
                    ending_call=call,
                    leave_reason=LEFT_MODERATOR_ENDED,
                    cancel_pending=False,
                )
                return
        self._settle(conference)

    def _settle(self, conference: Conference | None) -> None:
        """A never-started conference with nobody left (all dials failed) just goes away."""
        if conference is None or not conference.live or conference.started:
            return
        if not conference.participants():
            conference.status = "completed"
            conference.date_updated = utcnow()

    def _end_conference(
        self,
        conference: Conference,
        *,
        reason: str,
        ending_call: Call | None,
        leave_reason: str,
        cancel_pending: bool,
    ) -> None:
        conference.status = "completed"
        conference.reason_ended = reason
        conference.call_sid_ending = ending_call.sid if ending_call is not None else None
        conference.date_updated = utcnow()
        tails: list[asyncio.Task[Delivery | None]] = []
        last: Call | None = ending_call
        for other in list(conference.calls):
            if other is ending_call or other.ended:
                continue
            if other.joined:
                other.joined = False
                self._conference_event(
                    conference,
                    "participant-leave",
                    other,
                    extra={
                        "ParticipantCallStatus": "completed",
                        "ReasonParticipantLeft": leave_reason,
                    },
                )
                self._finish(other, "completed")
            elif cancel_pending:
                self._finish(other, "canceled")
                self._leave_unjoined(conference, other, leave_reason)
            else:
                continue  # still ringing: will start a new conference if it answers
            if ending_call is None:
                last = other  # attribute conference-end to the last one out
        if not conference.started:
            return
        # conference-end goes last: behind every callback still pending for any participant,
        # including leaves emitted before this teardown began.
        for call in conference.calls:
            tail = self.dispatcher.tail(call.sid)
            if tail is not None:
                tails.append(tail)
        extra: dict[str, ParamValue] = {"ReasonConferenceEnded": reason}
        if ending_call is not None:
            extra["CallSidEndingConference"] = ending_call.sid
            if ending_call.label:
                extra["ParticipantLabelEndingConference"] = ending_call.label
        self._conference_event(
            conference, "conference-end", last, participant=False, extra=extra, after=tails
        )

    # ------------------------------------------------------------------ webhooks

    def _progress(self, call: Call, event: str, call_status: str) -> None:
        """A call-progress callback, if the call's StatusCallbackEvent asked for it."""
        subscription = call.status_callback
        if not subscription.wants(event):
            return
        params: dict[str, ParamValue] = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call_status,
            "Called": call.to,
            "Caller": call.from_,
            "From": call.from_,
            "To": call.to,
            "Direction": call.direction,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(call.sequence),
            "Timestamp": rfc2822(utcnow()) or "",
        }
        if event == "completed":
            seconds = call.duration_seconds()
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(max(1, math.ceil(seconds / 60)) if call.answered else 0)
        call.sequence += 1
        self._send(call.sid, call, subscription, params)

    def _conference_event(
        self,
        conference: Conference,
        event: str,
        call: Call | None,
        *,
        participant: bool = True,
        extra: dict[str, ParamValue] | None = None,
        after: Iterable[asyncio.Future[Delivery | None]] = (),
    ) -> None:
        """A conference callback for ``event``; ``call`` is the participant that caused it.

        It goes to the conference's callback (its first participant's), if that asked for it.
        """
        subscription = conference.callback
        if not subscription.wants(event):
            return
        params: dict[str, ParamValue] = {
            "AccountSid": self.account_sid,
            "ConferenceSid": conference.sid,
            "FriendlyName": conference.friendly_name,
            "StatusCallbackEvent": event,
            "SequenceNumber": str(conference.sequence),
            "Timestamp": rfc2822(utcnow()) or "",
        }
        if participant and call is not None:
            params["CallSid"] = call.sid
            if call.label:
                params["ParticipantLabel"] = call.label
            params.update(
                {
                    "Muted": _bool(call.muted),
                    "Hold": _bool(call.hold),
                    "Coaching": _bool(call.coaching),
                    "EndConferenceOnExit": _bool(call.end_conference_on_exit),
                    "StartConferenceOnEnter": _bool(call.start_conference_on_enter),
                }
            )
        params.update(extra or {})
        conference.sequence += 1
        lane = call.sid if call is not None else conference.sid
        self._send(lane, call, subscription, params, after)

    def _send(
        self,
        lane: str,
        call: Call | None,
        subscription: Subscription,
        params: dict[str, ParamValue],
        after: Iterable[asyncio.Future[Delivery | None]] = (),
    ) -> None:
        assert subscription.url is not None
        on_done = call.history.append if call is not None else None
        self.dispatcher.enqueue(
            lane, subscription.url, params, subscription.method, on_done=on_done, after=after
        )
