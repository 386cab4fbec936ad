"""The HTTP API (docs/api.md), one declaration per operation.

Each operation is declared once (request DTO, response DTO, verb, route) and
served on its own route and on ServiceStack's predefined routes
(`/api/{Name}`, `/json/reply/{Name}`, `/jsv/reply/{Name}`); metadata reads the
same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from orchestrator import apikeys, metrics
from orchestrator.api import agents, members, outgoing, queues, sessions
from orchestrator.api.authn import USER_ROLE, authenticate
from orchestrator.api.binding import Value, read_dto
from orchestrator.api.responses import dto_response
from orchestrator.dto import (
    ADD_CONFERENCE_MEMBER_DTO,
    APP_CONFIG_DTO,
    DELETE_CHAT_MEMBER_DTO,
    END_SESSION_DTO,
    GET_ACTIVE_SESSIONS_DTO,
    GET_ACTIVE_SESSIONS_RESPONSE_DTO,
    GET_APP_CONFIG_DTO,
    GET_MY_SESSIONS_DTO,
    GET_MY_SESSIONS_RESPONSE_DTO,
    GET_SESSION_DTO,
    HOLD_SESSION_DTO,
    INVITE_CHAT_MEMBER_DTO,
    LIST_QUEUES_DTO,
    LIST_QUEUES_RESPONSE_DTO,
    LIST_SESSIONS_DTO,
    LIST_SESSIONS_RESPONSE_DTO,
    NEW_OUTGOING_SESSION_DTO,
    PATCH_SESSION_DTO,
    REDIRECT_SESSION_DTO,
    SESSION_INFO_DTO,
    SET_AGENT_STATE_DTO,
    SET_AGENT_STATE_RESPONSE_DTO,
    UPDATE_CONFERENCE_MEMBER_DTO,
    Dto,
)
from orchestrator.errors import ApiError, not_found
from orchestrator.redis_client import REDIS_ERRORS

Handler = Callable[[Request, apikeys.Principal, dict[str, Value]], Awaitable[Any]]


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
    # It changes a session, so it may answer 409: the session has ended, or the member left.
    conflicts: bool = False
    # The API document's group for it.
    tag: str = "sessions"
    # Errors it answers beyond those every operation may, or in other cases: status -> when.
    errors: Mapping[str, str] = field(default_factory=dict)


OPERATIONS = (
    Operation(
        INVITE_CHAT_MEMBER_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/{sessionId}/members",
        members.invite_chat_member,
        conflicts=True,
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
        conflicts=True,
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
        conflicts=True,
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
        conflicts=True,
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
        conflicts=True,
        summary="Put every member in the call but the holder on hold",
        twilio="Participant update Hold=true with hold music, for each member held.",
    ),
    Operation(
        PATCH_SESSION_DTO,
        SESSION_INFO_DTO,
        "PATCH",
        "/sessions/{sessionId}",
        sessions.patch_session,
        conflicts=True,
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
        conflicts=True,
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
    Operation(
        GET_APP_CONFIG_DTO,
        APP_CONFIG_DTO,
        "GET",
        "/app/config",
        agents.get_app_config,
        summary="The softphone's configuration: a Twilio access token for the key's user, "
        "the Client identity it registers under, and the agent's state",
        tag="agents",
        errors={
            "403": "The key lacks the required role, or acts as no user (a softphone is a user's)",
            "503": "State store unavailable; retry. Or `NotConfigured`: the server lacks "
            "settings that sign access tokens (the message names them); Retry-After is "
            "longer then, as only an operator's restart changes it",
        },
    ),
    Operation(
        NEW_OUTGOING_SESSION_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/outgoing",
        outgoing.new_outgoing_session,
        summary="Click to call: a new outgoing session that rings the key's user (their "
        "softphone) first, then dials numberToDial once their leg is in the conference",
        twilio="The worker dials the user (a participant create to client:<identity>, "
        "which starts the conference); once their leg is in it, the destination is dialled "
        "as an invited member.",
        tag="agents",
        errors={
            "403": "The key lacks the required role, or acts as no user (the call rings "
            "the key's user)",
        },
    ),
    Operation(
        GET_MY_SESSIONS_DTO,
        GET_MY_SESSIONS_RESPONSE_DTO,
        "GET",
        "/sessions/my",
        outgoing.get_my_sessions,
        summary="The sessions not ended in which the key's user has a leg invited, ringing, "
        "in the call or held, newest first",
        tag="agents",
        errors={"403": "The key lacks the required role, or acts as no user"},
    ),
    Operation(
        SET_AGENT_STATE_DTO,
        SET_AGENT_STATE_RESPONSE_DTO,
        "PATCH",
        "/app/agent-state",
        agents.set_agent_state,
        summary="Set the agent state of the key's user: Ready (ring queues offer them "
        "calls), NotReady or LoggedOut; an AgentStateChanged event follows each change",
        tag="agents",
        errors={
            "400": "agentState is missing, or not Ready, NotReady or LoggedOut (WrapUp is "
            "the service's)",
            "403": "The key lacks the required role, or acts as no user (a state is a user's)",
        },
    ),
    Operation(
        LIST_QUEUES_DTO,
        LIST_QUEUES_RESPONSE_DTO,
        "GET",
        "/queues",
        queues.list_queues,
        summary="The account's ring queues: their settings, the calls waiting, and their "
        "agents with their states",
        tag="agents",
    ),
)
_BY_NAME = {op.request.name.lower(): op for op in OPERATIONS}
PREDEFINED_PREFIXES = ("/api", "/json/reply", "/jsv/reply")
# "/sessions." and "/queues." too: ListSessions' and ListQueues' routes take a format suffix
# as well (/sessions.jsv).
API_PREFIXES = (
    "/sessions/",
    "/sessions.",
    "/app/",
    "/queues.",
    *(p + "/" for p in PREDEFINED_PREFIXES),
)


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
        except REDIS_ERRORS:
            requests.labels(name, "503").inc()
            raise
        except Exception:
            requests.labels(name, "500").inc()
            raise
        requests.labels(name, str(response.status_code)).inc()
        return response

    return handle


_ENDPOINTS = {name: endpoint(op) for name, op in _BY_NAME.items()}


def allowed(verbs: list[str]) -> str:
    """The `Allow` header of a 405: the methods the resource takes (HEAD with GET)."""
    return ", ".join([*verbs, "HEAD"] if "GET" in verbs else verbs)


def method_not_allowed(request: Request, verbs: list[str], name: str) -> ApiError:
    """ServiceStack's answer to a verb the operation does not implement, and the `Allow`
    header RFC 9110 requires of a 405."""
    return ApiError(
        405,
        "NotImplementedException",
        f"Could not find method named {request.method.title()}({name})",
        headers={"Allow": allowed(verbs)},
    )


def _verb(request: Request) -> str:
    """HEAD is answered as GET (without the body), as Starlette does for its own routes."""
    return "GET" if request.method == "HEAD" else request.method


async def predefined(request: Request) -> Response:
    """ServiceStack's predefined routes: the operation named by its request DTO."""
    name = request.path_params["operation"]
    op = _BY_NAME.get(name.lower())
    if op is None:
        raise not_found(f"Unknown operation '{name}'")
    if _verb(request) != op.verb:
        raise method_not_allowed(request, [op.verb], op.request.name)
    return await _ENDPOINTS[name.lower()](request)


def _resource(ops: list[Operation]) -> Route:
    """One route per path, taking each of its operations' verbs: Starlette then answers any
    other method with a 405 whose `Allow` names all of them, not only the first route's."""
    by_verb = {op.verb: _ENDPOINTS[op.request.name.lower()] for op in ops}

    async def dispatch(request: Request) -> Response:
        return await by_verb[_verb(request)](request)

    return Route(ops[0].path, dispatch, methods=list(by_verb))


class _AnyMethod:
    """An endpoint Starlette routes every method to (it routes only GET to a plain function
    given no methods), so that `predefined` answers each with the operation's own Allow."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


_BY_PATH: dict[str, list[Operation]] = {}
for _op in OPERATIONS:
    _BY_PATH.setdefault(_op.path, []).append(_op)

# Fixed paths before templated ones: /sessions/active is not the session "active".
routes = [
    _resource(ops) for _, ops in sorted(_BY_PATH.items(), key=lambda item: item[0].count("{"))
]
# Every method reaches the predefined routes: an operation's own verb is served, any other
# answered 405 with the operation's verb in `Allow`.
routes += [Route(prefix + "/{operation}", _AnyMethod(predefined)) for prefix in PREDEFINED_PREFIXES]
