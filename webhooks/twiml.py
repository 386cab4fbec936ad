"""The TwiML the voice webhook answers: a leg put into its session's conference, or a
reason spoken before the call ends."""

from __future__ import annotations

from starlette.responses import Response
from twilio.twiml.voice_response import Dial, VoiceResponse

from orchestrator import callback_urls


def respond(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="application/xml")


def _conference(sid: str, public_base_url: str, **options: object) -> Response:
    dial = Dial()
    dial.conference(
        sid,
        status_callback=callback_urls.conference_status(public_base_url),
        status_callback_event=" ".join(callback_urls.CONFERENCE_EVENTS),
        status_callback_method="POST",
        **options,
    )
    response = VoiceResponse()
    response.append(dial)
    return respond(response)


def join_conference(sid: str, public_base_url: str, *, customer: bool) -> Response:
    """Puts the call into the session's conference: a customer's (the caller's) with
    endConferenceOnExit, so that Twilio ends the conference at once when they hang up
    (set here, at join: Twilio ignores a change of it while the leg is held). An agent's
    own call does without: a transfer takes the agent off a call that goes on, and when
    they hang up, the session's end has the control job end the conference
    (docs/call-states.md#when-a-session-ends), as it also cancels legs still ringing."""
    return _conference(
        sid, public_base_url, start_conference_on_enter=True, end_conference_on_exit=customer
    )


def wait_in_conference(sid: str, public_base_url: str, hold_music_url: str | None) -> Response:
    """A caller who waits in a ring queue: in the session's conference, hearing hold music
    (HOLD_MUSIC_URL, else Twilio's own) until an agent joins and starts it
    (docs/queues.md)."""
    music = {"wait_url": hold_music_url, "wait_method": "GET"} if hold_music_url else {}
    return _conference(
        sid,
        public_base_url,
        start_conference_on_enter=False,
        end_conference_on_exit=True,
        **music,
    )


def reject() -> Response:
    response = VoiceResponse()
    response.reject()
    return respond(response)


def say_and_hang_up(text: str) -> Response:
    """The agent hears why their call is not placed; then the call ends."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return respond(response)
