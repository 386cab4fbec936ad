"""A local Twilio REST emulator for the conference orchestrator.

It is a real HTTP server speaking the slice of Twilio's 2010-04-01 REST API the orchestrator
uses (conference participants, conferences, calls), with Twilio's JSON and error bodies and
Basic auth, so the app runs unchanged with the official ``twilio`` client pointed at it
(``client.api.base_url = "http://127.0.0.1:8100"``). Instead of ringing phones, it plays each
call through Twilio-style status callbacks: form-encoded, signed with ``X-Twilio-Signature``
exactly as Twilio signs them, delivered in order per call.

The callee (``To``) scripts the call:

==================================  ======================================================
To                                  outcome
==================================  ======================================================
not E.164 / ``client:`` / ``sip:``  rejected synchronously: 400, code 21211
E.164 ending in ``0004``            rejected synchronously: 400, code 21211 (undialable)
E.164 ending in ``0001``            initiated -> ringing -> busy
E.164 ending in ``0002``            initiated -> ringing -> no-answer (after no_answer_seconds)
E.164 ending in ``0003``            initiated -> failed
``client:<identity>``               as the softphone registered under that identity answers
                                    (answer, decline -> busy, ignore -> no-answer); with none
                                    registered, initiated -> ringing -> no-answer
anything else                       initiated -> ringing -> answered (after ring_seconds):
                                    in-progress, participant-join (+ conference-start); stays
                                    until hung up, then participant-leave, completed
                                    (+ conference-end when the last participant leaves)
==================================  ======================================================

Control endpoints (no auth):

* ``GET  /_emulator/health`` -> ``{"ok": true}``
* ``GET  /_emulator/creates`` -> ``{"total": N, "byLabel": {label: count}, "times": [unix
  time of each create], "attempts": M}`` (``attempts``: every create past auth, faulted or not)
* ``GET  /_emulator/calls`` and ``GET /_emulator/calls/{CallSid}`` -> call state and the
  callbacks delivered for it, in order
* ``POST /_emulator/calls/{CallSid}/hangup`` -> the callee hangs up
* ``POST /_emulator/incoming`` (``From``, ``To``, optional ``VoiceUrl``) -> a customer calls in;
  the voice app's ``<Dial><Conference>`` decides the room
* ``POST /_emulator/softphones`` (``AccessToken``, ``Answer``), ``GET /_emulator/softphones``,
  ``DELETE /_emulator/softphones/{identity}`` -> agents' softphones, registered with an Access
  Token checked as Twilio checks it; ``POST /_emulator/softphones/{identity}/calls`` (``To``
  and custom params) -> the softphone places a call through its token's TwiML App
* ``POST /_emulator/reset`` -> forget everything, including the fault
* ``POST /_emulator/faults`` -> arm a fault for participant creates (or, with
  ``operation``, participant updates or deletes, Calls or Conference updates): ``mode`` ``status``
  (``status`` 429/500/503), ``delay`` (``seconds``: answered late, the participant still
  created) or ``reset`` (TCP RST, nothing created); for the next ``count`` creates (default
  1; ``count=0`` clears) or for ``for_seconds``. ``GET`` -> ``{"remaining", "served"}``, plus
  ``mode``, ``seconds`` and ``secondsLeft`` when they apply

Run it with ``python -m emulator --port 8100 --account-sid AC... --auth-token TOKEN``, or
build the app in-process with ``emulator.app.create_app``. The CLI serves the port through
``emulator.front``, a TCP front that can reset connections; in-process (or with
``--no-front``) ``mode=reset`` answers 502 instead. See ``emulator/README.md``.
"""

from emulator.app import create_app

__all__ = ["create_app"]
