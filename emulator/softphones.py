"""Agents' softphones: Voice SDK clients registered with an Access Token, by identity.

Twilio rings ``client:<identity>`` only at a softphone registered under that identity with a
token that is still valid and allows incoming calls; with none, the call rings unanswered
until its timeout (``no-answer``). What a registered softphone does with a call is what its
test or demo told it when it registered: answer it, decline it (``call.reject()``, which
Twilio reports as ``busy``), or let it ring (``no-answer``). Registering again under the
same identity replaces the registration, token and answer mode alike.

The registry holds no call state: the ``Switchboard`` asks ``outcome_for`` when it starts
playing a dialled call, and the control endpoints (``emulator.softphones_api``) register,
list and unregister.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from emulator.access_tokens import VoiceToken
from emulator.numbers import Outcome, is_client


class Answer(enum.Enum):
    """What a registered softphone does when it rings."""

    ANSWER = "answer"
    DECLINE = "decline"
    IGNORE = "ignore"


#: The call outcome each answer mode plays.
OUTCOMES = {
    Answer.ANSWER: Outcome.ANSWER,
    Answer.DECLINE: Outcome.BUSY,
    Answer.IGNORE: Outcome.NO_ANSWER,
}


@dataclass(frozen=True)
class Softphone:
    """One registration: the token it was made with and how it answers."""

    token: str
    grants: VoiceToken
    answer: Answer

    @property
    def identity(self) -> str:
        return self.grants.identity

    def live(self, now: float) -> bool:
        """Its token has not expired: Twilio still reaches it."""
        return self.grants.expires > now

    def as_json(self) -> dict[str, Any]:
        """The control endpoints' view of it."""
        return {
            "identity": self.identity,
            "answer": self.answer.value,
            "expires": self.grants.expires,
            "applicationSid": self.grants.application_sid,
            "incomingAllow": self.grants.incoming_allow,
        }


class Softphones:
    """The registered softphones, one per identity, in registration order."""

    def __init__(self) -> None:
        self._phones: dict[str, Softphone] = {}

    def register(self, softphone: Softphone) -> None:
        """Register ``softphone``, replacing any registration of the same identity."""
        self._phones.pop(softphone.identity, None)
        self._phones[softphone.identity] = softphone

    def unregister(self, identity: str) -> Softphone | None:
        """Forget the softphone of ``identity``; the one forgotten, or None."""
        return self._phones.pop(identity, None)

    def get(self, identity: str) -> Softphone | None:
        return self._phones.get(identity)

    def all(self) -> list[Softphone]:
        return list(self._phones.values())

    def outcome_for(self, address: str, now: float) -> Outcome | None:
        """What a call to ``address`` does, if it is a ``client:`` address; None otherwise.

        An identity with no softphone, an expired token or a token without
        ``incoming.allow`` never answers: ``no-answer``, as Twilio rings nobody.
        """
        if not is_client(address):
            return None
        softphone = self._phones.get(address[len("client:") :])
        if softphone is None or not softphone.live(now) or not softphone.grants.incoming_allow:
            return Outcome.NO_ANSWER
        return OUTCOMES[softphone.answer]

    def reset(self) -> None:
        """Forget every softphone (``/_emulator/reset``)."""
        self._phones.clear()
