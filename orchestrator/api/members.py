"""The member operations (docs/api.md): invite (InviteChatMember, AddConferenceMember),
remove (DeleteChatMember), hold or mute one member (UpdateConferenceMember)."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator import apikeys, dial_policy, store
from orchestrator.api.binding import Value, field_error, trim
from orchestrator.dto import SessionView
from orchestrator.errors import ApiError, FieldError, conflict, not_found, validation
from orchestrator.jobs import dial_job
from orchestrator.phone import InvalidPhoneNumber, normalise


def actor(principal: apikeys.Principal) -> store.Actor:
    """What the scripts record of who made a change."""
    return store.Actor(
        id=principal.actor_id, name=principal.user_name or "", user_id=principal.user_id or ""
    )


def text(dto: dict[str, Value], name: str) -> str:
    value = dto.get(name)
    return trim(value) if isinstance(value, str) else ""


def session_id(dto: dict[str, Value], errors: list[FieldError] | None = None) -> str:
    sid = text(dto, "sessionId")
    if not sid:
        error = field_error("sessionId", "NotEmpty", "{field} must not be empty.")
        if errors is None:
            raise validation([error])
        errors.append(error)
    return sid


def member_target(field: str, value: str, region: str) -> tuple[str, str]:
    """('user', id-or-email) or ('phone', E.164) for the member to add."""
    if "@" in value or value.startswith("usr_"):
        return "user", value.lower()
    try:
        return "phone", normalise(value, region)
    except InvalidPhoneNumber:
        raise validation(
            [
                field_error(
                    field,
                    "InvalidPhoneNumber",
                    "{field} must be a phone number (E.164, e.g. +14155550100) "
                    "or the ID or email of a user of this account.",
                )
            ]
        ) from None


def caller_id(field: str, value: str, region: str, errors: list[FieldError]) -> str | None:
    if not value:
        return None
    try:
        return normalise(value, region)
    except InvalidPhoneNumber:
        errors.append(
            field_error(
                field,
                "InvalidPhoneNumber",
                "{field} must be a phone number in E.164 form, e.g. +14155550100.",
            )
        )
        return None


async def dial_refusal(request: Request, account_id: str, e164: str) -> str | None:
    """Why the account may not dial `e164` (docs/api.md#where-dials-may-go), None if it
    may: asked before anything is stored, so a refused number is never dialled."""
    cache: dial_policy.CountryCache = request.app.state.dial_countries
    settings = request.app.state.settings
    countries = await cache.countries(request.app.state.redis, account_id, settings.dial_countries)
    return dial_policy.refusal(e164, countries)


def missing(sid: str) -> Exception:
    return not_found(f"Session '{sid}' does not exist")


def ended(sid: str) -> Exception:
    return conflict(f"Session '{sid}' has ended")


async def add_member(
    request: Request,
    principal: apikeys.Principal,
    dto: dict[str, Value],
    *,
    member_field: str,
    caller_field: str,
    redirect: bool = False,
) -> store.InviteResult:
    """Invite a member (or, with `redirect`, transfer the call to it), validated as one."""
    settings = request.app.state.settings
    errors: list[FieldError] = []
    sid = session_id(dto, errors)
    member_text = text(dto, member_field)
    target: tuple[str, str] | None = None
    if not member_text:
        errors.append(field_error(member_field, "NotEmpty", "{field} must not be empty."))
    else:
        try:  # reported with the other fields' errors, one entry per bad field
            target = member_target(member_field, member_text, settings.phone_region)
        except ApiError as exc:
            errors += exc.errors
    if target is not None and target[0] == "phone":
        why = await dial_refusal(request, principal.account_id, target[1])
        if why is not None:
            errors.append(field_error(member_field, "DialNotAllowed", f"{{field}}: {why}."))
            target = None
    caller = caller_id(caller_field, text(dto, caller_field), settings.phone_region, errors)
    if errors or target is None:
        raise validation(errors)
    kind, ref = target
    member_id = store.new_id("mem")
    result = await store.invite(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        kind=kind,
        ref=ref,
        member_id=member_id,
        caller_id=caller,
        actor=actor(principal),
        job=dial_job(
            sid,
            member_id,
            settings.dial_retry_backoff,
            settings.dial_job_timeout,
            settings.event_retention_seconds,
        ),
        redirect_to=member_text if redirect else None,
    )
    if result.outcome == "notfound":
        raise missing(sid)
    if result.outcome == "ended":
        raise ended(sid)
    if result.outcome == "nouser":
        raise validation(
            [
                field_error(
                    member_field, "NotFound", f"{{field}}: no user '{member_text}' in this account."
                )
            ]
        )
    return result


async def invite_chat_member(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    result = await add_member(
        request, principal, dto, member_field="memberToAdd", caller_field="callerId"
    )
    assert result.session is not None
    return result.session


async def add_conference_member(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    """InviteChatMember with memberToAdd = destination, callerId = fromNumber."""
    result = await add_member(
        request, principal, dto, member_field="destination", caller_field="fromNumber"
    )
    assert result.session is not None
    return result.session


def change_result(sid: str, change: store.Change, what: str) -> SessionView:
    if change.outcome == "notfound":
        raise missing(sid)
    if change.outcome == "ended":
        raise ended(sid)
    if change.outcome == "nomember":
        raise not_found(f"No {what} in session '{sid}'")
    if change.outcome == "gone":
        raise conflict(f"The {what} has left the call")
    assert change.session is not None
    return change.session


async def delete_chat_member(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    errors: list[FieldError] = []
    sid = session_id(dto, errors)
    member = text(dto, "memberToRemove") or trim(request.path_params.get("memberId", ""))
    if not member:
        errors.append(field_error("memberToRemove", "NotEmpty", "{field} must not be empty."))
    if errors:
        raise validation(errors)
    change = await store.remove_member(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        member=member,
        actor=actor(principal),
    )
    return change_result(sid, change, f"member '{member}'")


async def update_conference_member(
    request: Request, principal: apikeys.Principal, dto: dict[str, Value]
) -> SessionView:
    errors: list[FieldError] = []
    sid = session_id(dto, errors)
    call_sid = text(dto, "callSid")
    if not call_sid:
        errors.append(field_error("callSid", "NotEmpty", "{field} must not be empty."))
    hold, muted = dto.get("hold"), dto.get("muted")
    if errors:
        raise validation(errors)
    change = await store.update_member(
        request.app.state.scripts,
        sid=sid,
        account_id=principal.account_id,
        call_sid=call_sid,
        hold=hold if isinstance(hold, bool) else None,
        muted=muted if isinstance(muted, bool) else None,
        actor=actor(principal),
    )
    return change_result(sid, change, f"member with call '{call_sid}'")
