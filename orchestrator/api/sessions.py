"""The session operations (docs/api.md): read, hold, patch, transfer, end, list."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from starlette.requests import Request

from orchestrator import apikeys, store
from orchestrator.api.binding import Value, field_error
from orchestrator.api.members import actor, add_member, change_result, missing, session_id, text
from orchestrator.dto import LIST_SESSIONS, PATCH_SESSION, SessionListView, SessionView
from orchestrator.errors import FieldError, validation

# The limits the DTOs declare (and the API's document states).
_PATCH = {f.name: f for f in PATCH_SESSION}
_LIST = {f.name: f for f in LIST_SESSIONS}
CONSOLE_DATA_LIMIT: int = _PATCH["consoleData"].max_bytes or 0
PATCH_CALL_STATES = _PATCH["callState"].values
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE: int = _LIST["countPerPage"].maximum or 0


async def get_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    sid = session_id(dto)
    session = await store.get_session(request.app.state.scripts, sid, principal.account_id)
    if session is None:
        raise missing(sid)
    return session


async def hold_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    sid = session_id(dto)
    change = await store.patch_session(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        actor=actor(principal),
        call_state="Hold",
        hold_reason=text(dto, "reason") or "None",
        holder_call_sid=text(dto, "callSid"),
    )
    return change_result(sid, change, f"member with call '{text(dto, 'callSid')}'")


async def patch_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    errors: list[FieldError] = []
    sid = session_id(dto, errors)
    state = text(dto, "callState")
    if state and state not in PATCH_CALL_STATES:
        errors.append(
            field_error(
                "callState",
                "InvalidValue",
                "{field} can only be Connected (off hold) or Hold.",
            )
        )
    fields: dict[str, str] = {}
    console = dto.get("consoleData")
    if isinstance(console, str):
        if len(console.encode()) > CONSOLE_DATA_LIMIT:
            errors.append(
                field_error(
                    "consoleData",
                    "MaxLength",
                    f"{{field}} is limited to {CONSOLE_DATA_LIMIT} bytes.",
                )
            )
        fields["consoleData"] = console
    if queue := text(dto, "queueState"):
        fields["queueState"] = queue
    if errors:
        raise validation(errors)
    change = await store.patch_session(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        actor=actor(principal),
        call_state=state,
        hold_reason=text(dto, "holdReason"),
        fields=fields,
    )
    return change_result(sid, change, "session")


async def redirect_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> None:
    """A blind transfer; answers 204 (a void operation)."""
    await add_member(
        request, principal, dto, member_field="destination", caller_field="callerId", redirect=True
    )


async def end_session(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> None:
    """Answers 204, also for a session that has already ended."""
    sid = session_id(dto)
    outcome = await store.end_session(
        request.app.state.scripts, sid=sid, account_id=principal.account_id, actor=actor(principal)
    )
    if outcome == "notfound":
        raise missing(sid)


async def get_active_sessions(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionListView:
    page = await store.list_sessions(
        request.app.state.redis,
        request.app.state.scripts,
        account_id=principal.account_id,
        active_only=True,
        count=-1,  # all of them: an account has as many live calls as agents and callers
    )
    return SessionListView("sessions", page.sessions)


def _epoch_ms(dto: dict[str, Value], name: str, errors: list[FieldError]) -> int | None:
    value = text(dto, name)
    if not value:
        return None
    try:
        # Upper case: RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        errors.append(field_error(name, "InvalidDate", "{field} must be an ISO 8601 date or time."))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def list_sessions(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionListView:
    errors: list[FieldError] = []
    since = _epoch_ms(dto, "startDate", errors)
    until = _epoch_ms(dto, "endDate", errors)
    page = dto.get("page")
    page = 0 if page is None else page
    size = dto.get("countPerPage")
    size = DEFAULT_PAGE_SIZE if size is None else size
    if not isinstance(page, int) or page < 0:
        errors.append(field_error("page", "InvalidValue", "{field} must be 0 or more."))
    if not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        errors.append(
            field_error(
                "countPerPage", "InvalidValue", f"{{field}} must be from 1 to {MAX_PAGE_SIZE}."
            )
        )
    if errors:
        raise validation(errors)
    assert isinstance(page, int) and isinstance(size, int)
    found = await store.list_sessions(
        request.app.state.redis,
        request.app.state.scripts,
        account_id=principal.account_id,
        active_only=False,
        since_ms=since,
        until_ms=None if until is None else until - 1,  # endDate is exclusive
        offset=page * size,
        count=size,
        ascending=text(dto, "sortOrder") == "Ascend",
    )
    pages = math.ceil(found.total / size)
    return SessionListView(
        "items",
        found.sessions,
        totalCount=found.total,
        totalPages=pages,
        hasMorePages=page + 1 < pages,
    )
