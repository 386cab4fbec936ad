"""The HTTP API of SPEC 4, one declaration per operation.

Each operation is declared once (request DTO, response DTO, verb, route) and
served on its own route and on ServiceStack's predefined routes
(`/api/{Name}`, `/json/reply/{Name}`, `/jsv/reply/{Name}`); metadata reads the
same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import auth, metrics
from orchestrator.api import members, sessions
from orchestrator.api.authn import USER_ROLE, authenticate
from orchestrator.api.binding import Value, read_dto
from orchestrator.api.responses import dto_response
from orchestrator.dto import (
    ADD_CONFERENCE_MEMBER_DTO,
    DELETE_CHAT_MEMBER_DTO,
    END_SESSION_DTO,
    GET_ACTIVE_SESSIONS_DTO,
    GET_ACTIVE_SESSIONS_RESPONSE_DTO,
    GET_SESSION_DTO,
    HOLD_SESSION_DTO,
    INVITE_CHAT_MEMBER_DTO,
    LIST_SESSIONS_DTO,
    LIST_SESSIONS_RESPONSE_DTO,
    PATCH_SESSION_DTO,
    REDIRECT_SESSION_DTO,
    SESSION_INFO_DTO,
    UPDATE_CONFERENCE_MEMBER_DTO,
    Dto,
)
from orchestrator.errors import ApiError, not_found

Handler = Callable[[Request, auth.Principal, dict[str, Value]], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One API operation; `response` None is a void one (204 No Content)."""

    request: Dto
    response: Dto | None
    verb: str
    path: str
    handler: Handler
    role: str = USER_ROLE
    summary: str = ""
    # The Twilio work it causes, for the docs (OpenAPI description).
    twilio: str = ""


OPERATIONS = (
    Operation(
        INVITE_CHAT_MEMBER_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/{sessionId}/members",
        members.invite_chat_member,
        summary="Add a member to the chat session",
        twilio="The worker dials the member into the session's conference (a participant "
        "create); its call state then follows Twilio's callbacks.",
    ),
    Operation(
        GET_SESSION_DTO,
        SESSION_INFO_DTO,
        "GET",
        "/sessions/{sessionId}",
        sessions.get_session,
        summary="Get a session by its ID",
    ),
    Operation(
        ADD_CONFERENCE_MEMBER_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/{sessionId}/conference/members",
        members.add_conference_member,
        summary="Add a member to the conference: InviteChatMember with memberToAdd = "
        "destination, callerId = fromNumber",
        twilio="As InviteChatMember.",
    ),
    Operation(
        DELETE_CHAT_MEMBER_DTO,
        SESSION_INFO_DTO,
        "DELETE",
        "/sessions/{sessionId}/members/{memberId}",
        members.delete_chat_member,
        summary="Remove a member from the session",
        twilio="Not yet dialled: never dialled. Being dialled or ringing: the leg is "
        "cancelled (Calls update Status=canceled). In the call: the participant is removed "
        "from the conference (participant delete, by the conference's CF sid).",
    ),
    Operation(
        UPDATE_CONFERENCE_MEMBER_DTO,
        SESSION_INFO_DTO,
        "PATCH",
        "/sessions/{sessionId}/conference/members/{callSid}",
        members.update_conference_member,
        summary="Hold or mute one member of the conference",
        twilio="Participant update Hold (with HOLD_MUSIC_URL) / Muted; the member's Hold "
        "and muted follow Twilio's participant-hold and participant-mute callbacks.",
    ),
    Operation(
        HOLD_SESSION_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/{sessionId}/hold",
        sessions.hold_session,
        summary="Put every member in the call but the holder on hold",
        twilio="Participant update Hold=true with hold music, for each member held.",
    ),
    Operation(
        PATCH_SESSION_DTO,
        SESSION_INFO_DTO,
        "PATCH",
        "/sessions/{sessionId}",
        sessions.patch_session,
        summary="Update the session: console data, queue state; callState Connected takes "
        "it off hold, Hold holds it. Once the session has ended, consoleData and queueState "
        "may still be written (wrap-up notes); callState and holdReason then answer 409",
        twilio="callState Connected: participant update Hold=false for each member the "
        "session held.",
    ),
    Operation(
        REDIRECT_SESSION_DTO,
        None,
        "POST",
        "/sessions/{sessionId}/redirect",
        sessions.redirect_session,
        summary="Blind transfer: invite the destination, every member but the caller leaves",
        twilio="The destination is dialled; every other leg is hung up; the caller is held "
        "(hold music) until the destination connects, then taken off hold.",
    ),
    Operation(
        END_SESSION_DTO,
        None,
        "DELETE",
        "/sessions/{sessionId}",
        sessions.end_session,
        summary="End the session: the conference is ended and every leg hung up",
        twilio="Conference update Status=completed; every leg still ringing is cancelled.",
    ),
    Operation(
        GET_ACTIVE_SESSIONS_DTO,
        GET_ACTIVE_SESSIONS_RESPONSE_DTO,
        "GET",
        "/sessions/active",
        sessions.get_active_sessions,
        summary="The account's sessions that have not ended, newest first",
    ),
    Operation(
        LIST_SESSIONS_DTO,
        LIST_SESSIONS_RESPONSE_DTO,
        "GET",
        "/sessions",
        sessions.list_sessions,
        summary="The account's sessions still kept (ended ones for seven days), a page at a time",
    ),
)
_BY_NAME = {op.request.name.lower(): op for op in OPERATIONS}
PREDEFINED_PREFIXES = ("/api", "/json/reply", "/jsv/reply")
# "/sessions." too: ListSessions' route takes a format suffix as well (/sessions.jsv).
API_PREFIXES = ("/sessions/", "/sessions.", *(p + "/" for p in PREDEFINED_PREFIXES))


_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    """The operation's route handler; counts each answer by operation and status (what the
    app's exception handlers make of an error: its status, 503 for Redis away, else 500)."""
    requests = metrics.REQUESTS
    name = op.request.name

    async def handle(request: Request) -> Response:
        try:
            principal = await authenticate(request, op.role)
            dto = await read_dto(request, op.request.fields)
            result = await op.handler(request, principal, dto)
            if op.response is None:
                response = Response(status_code=204)
            else:
                response = dto_response(request, result)
        except ApiError as exc:
            requests.labels(name, str(exc.status)).inc()
            raise
        except _REDIS_ERRORS:
            requests.labels(name, "503").inc()
            raise
        except Exception:
            requests.labels(name, "500").inc()
            raise
        requests.labels(name, str(response.status_code)).inc()
        return response

    return handle


_ENDPOINTS = {name: endpoint(op) for name, op in _BY_NAME.items()}


async def predefined(request: Request) -> Response:
    """ServiceStack's predefined routes: the operation named by its request DTO."""
    name = request.path_params["operation"]
    op = _BY_NAME.get(name.lower())
    if op is None:
        raise not_found(f"Unknown operation '{name}'")
    if request.method != op.verb:
        raise ApiError(
            405,
            "NotImplementedException",
            f"Could not find method named {request.method.title()}({op.request.name})",
        )
    return await _ENDPOINTS[name.lower()](request)


# Fixed paths before templated ones: /sessions/active is not the session "active".
routes = [
    Route(op.path, _ENDPOINTS[op.request.name.lower()], methods=[op.verb])
    for op in sorted(OPERATIONS, key=lambda op: op.path.count("{"))
]
routes += [
    Route(prefix + "/{operation}", predefined, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    for prefix in PREDEFINED_PREFIXES
]
