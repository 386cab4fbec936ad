"""The HTTP API of SPEC 4: invite a member, read a session.

Each operation is declared once (request DTO, response DTO, verb, route) and
served on its own route and on ServiceStack's predefined routes
(`/api/{Name}`, `/json/reply/{Name}`, `/jsv/reply/{Name}`); metadata reads the
same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import auth, store
from orchestrator.api.authn import USER_ROLE, authenticate
from orchestrator.api.binding import field_error, read_dto
from orchestrator.api.responses import dto_response
from orchestrator.dto import (
    GET_SESSION_DTO,
    INVITE_CHAT_MEMBER_DTO,
    SESSION_INFO_DTO,
    Dto,
    SessionView,
)
from orchestrator.errors import (
    ApiError,
    FieldError,
    conflict,
    not_found,
    validation,
)
from orchestrator.jobs import dial_job
from orchestrator.phone import InvalidPhoneNumber, normalise


def _session_id(value: str | None) -> str:
    value = (value or "").strip()
    if not value:
        raise validation([field_error("sessionId", "NotEmpty", "{field} must not be empty.")])
    return value


def _member_target(text: str, region: str) -> tuple[str, str]:
    """('user', id-or-email) or ('phone', E.164) for memberToAdd."""
    if "@" in text or text.startswith("usr_"):
        return "user", text.lower()
    try:
        return "phone", normalise(text, region)
    except InvalidPhoneNumber:
        raise validation(
            [
                field_error(
                    "memberToAdd",
                    "InvalidPhoneNumber",
                    "{field} must be a phone number (E.164, e.g. +14155550100) "
                    "or the ID or email of a user of this account.",
                )
            ]
        ) from None


async def invite_member(
    request: Request, principal: auth.Principal, dto: dict[str, str | None]
) -> SessionView:
    settings = request.app.state.settings
    errors: list[FieldError] = []
    sid = (dto["sessionId"] or "").strip()
    member_text = (dto["memberToAdd"] or "").strip()
    caller_text = (dto["callerId"] or "").strip()
    if not sid:
        errors.append(field_error("sessionId", "NotEmpty", "{field} must not be empty."))
    if not member_text:
        errors.append(field_error("memberToAdd", "NotEmpty", "{field} must not be empty."))
    caller_id = None
    if caller_text:
        try:
            caller_id = normalise(caller_text, settings.phone_region)
        except InvalidPhoneNumber:
            errors.append(
                field_error(
                    "callerId",
                    "InvalidPhoneNumber",
                    "{field} must be a phone number in E.164 form, e.g. +14155550100.",
                )
            )
    if errors:
        raise validation(errors)
    kind, ref = _member_target(member_text, settings.phone_region)

    member_id = store.new_id("mem")
    result = await store.invite(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        kind=kind,
        ref=ref,
        member_id=member_id,
        caller_id=caller_id,
        job=dial_job(sid, member_id, settings.dial_retry_backoff, settings.dial_job_timeout),
    )
    if result.outcome == "notfound":
        raise not_found(f"Session '{sid}' does not exist")
    if result.outcome == "ended":
        raise conflict(f"Session '{sid}' has ended")
    if result.outcome == "nouser":
        raise validation(
            [
                field_error(
                    "memberToAdd",
                    "NotFound",
                    f"{{field}}: no user '{member_text}' in this account.",
                )
            ]
        )
    assert result.session is not None
    return result.session


async def get_session(
    request: Request, principal: auth.Principal, dto: dict[str, str | None]
) -> SessionView:
    sid = _session_id(dto["sessionId"])
    session = await store.get_session(request.app.state.scripts, sid, principal.account_id)
    if session is None:
        raise not_found(f"Session '{sid}' does not exist")
    return session


Handler = Callable[[Request, auth.Principal, dict[str, str | None]], Awaitable[SessionView]]


@dataclass(frozen=True)
class Operation:
    request: Dto
    response: Dto
    verb: str
    path: str
    handler: Handler
    role: str = USER_ROLE
    summary: str = ""


OPERATIONS = (
    Operation(
        INVITE_CHAT_MEMBER_DTO,
        SESSION_INFO_DTO,
        "POST",
        "/sessions/{sessionId}/members",
        invite_member,
        summary="Add a member to the chat session",
    ),
    Operation(
        GET_SESSION_DTO,
        SESSION_INFO_DTO,
        "GET",
        "/sessions/{sessionId}",
        get_session,
        summary="Get a session by its ID",
    ),
)
_BY_NAME = {op.request.name.lower(): op for op in OPERATIONS}
PREDEFINED_PREFIXES = ("/api", "/json/reply", "/jsv/reply")
API_PREFIXES = ("/sessions/", *(p + "/" for p in PREDEFINED_PREFIXES))


def endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        principal = await authenticate(request, op.role)
        dto = await read_dto(request, op.request.fields)
        return dto_response(request, await op.handler(request, principal, dto))

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


routes = [
    Route(op.path, _ENDPOINTS[op.request.name.lower()], methods=[op.verb]) for op in OPERATIONS
]
routes += [
    Route(prefix + "/{operation}", predefined, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    for prefix in PREDEFINED_PREFIXES
]
