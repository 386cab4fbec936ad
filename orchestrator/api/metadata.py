"""API metadata generated from the DTO and operation declarations the server
itself uses: an OpenAPI 3 document and ServiceStack-style Python DTOs, so
neither can drift from what is served."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import phonenumbers

from orchestrator import __version__, dial_policy
from orchestrator.api.binding import WHITESPACE
from orchestrator.api.operations import OPERATIONS, PREDEFINED_PREFIXES, Operation
from orchestrator.dto import DTOS, ENUMS, Dto, Field

# Verbs whose requests carry their fields in the query string (no body), as the
# ServiceStack clients send them.
QUERY_VERBS = ("GET", "DELETE")

# Every error body is a ResponseStatus; which of these an operation may answer is worked out
# from its declaration in `_statuses`.
ERROR_STATUSES = {
    "400": "Bad input (a required field missing or blank, a value of the wrong form, a body "
    "that does not parse): one `errors` entry per bad field",
    "401": "No or unknown API key",
    "403": "The key lacks the required role",
    "404": "No such session (or member) in the key's account",
    "405": "A path parameter holding `/` names another route, which does not take this method",
    "409": "The session has ended (or the member has left the call)",
    "413": "Request body too large",
    "415": "Unsupported Content-Type",
    "503": "State store unavailable; retry",
}
# Headers an error always carries.
_ERROR_HEADERS = {
    "401": {"WWW-Authenticate": "How to authenticate: `Bearer`"},
    "503": {"Retry-After": "Seconds to wait before retrying"},
}

# --- What a request may send ------------------------------------------------------
# Each pattern is what the handlers accept, no more and no less. What they trim (and take
# for blank) is binding.WHITESPACE, written out here as a class of `\uXXXX` escapes, which
# every regular expression engine reads alike.

_WS = "".join(f"\\u{ord(c):04x}" for c in WHITESPACE)
# Anything but only whitespace.
_NOT_BLANK = f"[^{_WS}]"
# One path segment: no `/` (it would name another route), not only whitespace.
_SEGMENT = f"^[^/]*[^/{_WS}][^/]*$"
_BLANK = f"^[{_WS}]*$"


# The number types a dial never reaches (dial_policy.NEVER_DIALLED), by their name in a
# region's numbering plan.
_NEVER_DIALLED_DESCS = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium_rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
}


@functools.cache
def _phone_pattern(region: str, dialled: bool = False) -> str:
    """The phone numbers `orchestrator.phone.normalise` takes in `region`, without
    punctuation: national, with the national prefix, or with the country code. Derived from
    the numbering plan `phonenumbers` validates against (every number type of the region);
    for a number to be `dialled`, without the types no dial reaches (premium-rate...)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    names = (
        "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number",
        "voip", "pager", "uan", "voicemail",
    )  # fmt: skip
    if dialled:
        never = {_NEVER_DIALLED_DESCS[kind] for kind in dial_policy.NEVER_DIALLED}
        names = tuple(name for name in names if name not in never)
    descs = [getattr(meta, name) for name in names]
    numbers = dict.fromkeys(d.national_number_pattern for d in descs if d is not None)
    national = "|".join(f"(?:{p})" for p in numbers if p)
    prefixes = [rf"\+{meta.country_code}"]
    if meta.national_prefix:
        prefixes.append(re.escape(meta.national_prefix))
    return f"^[{_WS}]*(?:{'|'.join(prefixes)})?(?:{national})[{_WS}]*$"


def _shape(field: Field, region: str) -> dict[str, Any]:
    """The string schema of a request field whose text has a form (Field.shape)."""
    phone = _phone_pattern(region)
    if field.shape == "member":
        # A user by email (any text with `@`) or ID (usr_...), else a number a dial may reach.
        return {"pattern": f"@|^[{_WS}]*usr_|{_phone_pattern(region, dialled=True)}"}
    if field.shape == "phone":
        return {"pattern": f"{_BLANK}|{phone}"}
    if field.shape == "date-time":
        return {"anyOf": [{"format": "date-time"}, {"pattern": _BLANK}]}
    if field.shape.startswith("sid:"):
        return {"pattern": f"{_BLANK}|^[{_WS}]*{field.shape[4:]}[0-9a-fA-F]{{32}}[{_WS}]*$"}
    return {}


_PHONE_TEXT = (
    "A phone number: E.164 (+14155550100), or national in the server's region (4155550100); "
    "the pattern gives them without punctuation, which is also accepted."
)
_SHAPE_TEXT = {
    "member": "A user's email or ID (usr_...), or a phone number. " + _PHONE_TEXT + " A "
    "premium-rate or shared-cost number, or one of a country the account may not dial, is "
    "refused (400 DialNotAllowed).",
    "phone": _PHONE_TEXT + " Empty: none.",
    "date-time": "Any ISO 8601 date or time is read; empty: none.",
}


def _shape_text(field: Field) -> str:
    if field.shape.startswith("sid:"):
        return f"A Twilio SID: {field.shape[4:]} and 32 hex digits; empty: none."
    return _SHAPE_TEXT.get(field.shape, "")


def _schema(field: Field, request: bool = False, region: str = "US") -> dict[str, Any]:
    """The field's schema; in a request (`request`), with everything the server checks."""
    kind = field.type
    if kind == "bool":
        schema: dict[str, Any] = {"type": "boolean"}
    elif kind == "bool?":
        schema = {"type": "boolean", "nullable": True}
    elif kind == "int":
        schema = {"type": "integer", "format": "int32", "nullable": True}
        if field.minimum is not None:
            schema["minimum"] = field.minimum
        if field.maximum is not None:
            schema["maximum"] = field.maximum
    elif isinstance(kind, type) and issubclass(kind, Enum):
        if request:
            # Leaving it out (or null) leaves it unchanged.
            names = list(field.values or (m.value for m in kind))
            schema = {"type": "string", "enum": [*names, None], "nullable": True}
        else:
            schema = {"allOf": [{"$ref": f"#/components/schemas/{kind.__name__}"}]}
    elif kind.startswith("list:"):
        ref = {"$ref": f"#/components/schemas/{kind[5:]}"}
        schema = {"type": "array", "items": ref, "nullable": True}
    elif kind.startswith("dict:"):
        schema = {"type": "object", "additionalProperties": {"type": "string"}, "nullable": True}
    elif kind.startswith("dto:"):
        schema = {"allOf": [{"$ref": f"#/components/schemas/{kind[4:]}"}], "nullable": True}
    elif request and field.required:
        # A member's own pattern (never blank) replaces the not-blank one.
        schema = {"type": "string", "pattern": _NOT_BLANK, **_shape(field, region)}
    else:
        schema = {"type": "string", "nullable": True}
        if request:
            schema |= _shape(field, region)
    parts = [field.description or "", _shape_text(field) if request else ""]
    if description := ". ".join(p for p in parts if p):
        schema["description"] = description
    return schema


def _text_only(schema: dict[str, Any]) -> dict[str, Any]:
    """A value sent as text (query string, form field) is never null."""
    schema = {k: v for k, v in schema.items() if k != "nullable"}
    if "enum" in schema:
        schema["enum"] = [v for v in schema["enum"] if v is not None]
    return schema


def _object(
    dto: Dto,
    request: bool = False,
    region: str = "US",
    leave_out: frozenset[str] = frozenset(),
    text: bool = False,
) -> dict[str, Any]:
    """The DTO's schema; a request's lists its required fields, without `leave_out` (the
    fields the route's path carries); with `text`, as a form sends it (no nulls)."""
    fields = [f for f in dto.fields if f.name not in leave_out]
    properties = {f.name: _schema(f, request, region) for f in fields}
    if text:
        properties = {name: _text_only(schema) for name, schema in properties.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [f.name for f in fields if request and f.required]
    if required:
        schema["required"] = required
    if dto.description:
        schema["description"] = dto.description
    return schema


_JSV_BODY = (
    "\n\nThe body may also be JSV (`Content-Type: text/jsv`), ServiceStack's text format: "
    "the same fields, as `{name:value,name:value}`."
)


def _request_body(op: Operation, leave_out: frozenset[str], region: str) -> dict[str, Any]:
    if leave_out:
        schema = _object(op.request, True, region, leave_out)
        schema.pop("description", None)
    else:
        schema = {"$ref": f"#/components/schemas/{op.request.name}"}
    form = _object(op.request, True, region, leave_out, text=True)
    form.pop("description", None)
    required = any(f.required and f.name not in leave_out for f in op.request.fields)
    return {
        # JSV has no JSON Schema serialisation, so it is described in words only.
        "description": (op.request.description or op.request.name) + _JSV_BODY,
        "required": required,
        "content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": form},
        },
    }


def _statuses(op: Operation, path_params: set[str]) -> list[str]:
    """The errors the operation may answer, from its declaration: every one may be refused
    (400, 413, 415), unauthenticated (401, 403) or meet Redis away (503); one naming a
    session may not find it (404); one changing a session may find it ended (409); and
    whatever else it declares (`Operation.errors`)."""
    names = {f.name for f in op.request.fields}
    statuses = ["400", "401", "403"]
    if "sessionId" in names:
        statuses.append("404")
    if path_params:
        statuses.append("405")
    if op.conflicts:
        statuses.append("409")
    statuses += ["413", "415", "503"]
    return sorted({*statuses, *op.errors})


def _error(status: str, description: str | None = None) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    answer: dict[str, Any] = {
        "description": description or ERROR_STATUSES[status],
        "content": {"application/json": {"schema": schema}, "text/jsv": {"schema": schema}},
    }
    if status in _ERROR_HEADERS:
        answer["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in _ERROR_HEADERS[status].items()
        }
    return answer


def _responses(op: Operation, path_params: set[str]) -> dict[str, Any]:
    responses: dict[str, Any]
    if op.response is None:
        responses = {"204": {"description": "No Content"}}
    else:
        ok = {"$ref": f"#/components/schemas/{op.response.name}"}
        responses = {
            "200": {
                "description": op.response.name,
                "content": {"application/json": {"schema": ok}, "text/jsv": {"schema": ok}},
            }
        }
    for status in _statuses(op, path_params):
        responses[status] = _error(status, op.errors.get(status))
    return responses


_FORMAT_PARAM = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "Response format, `json` or `jsv` (any case); overrides the Accept header. "
    "Any other value is ignored, as ServiceStack ignores a format it does not know",
    "schema": {"type": "string"},
}


def _path_param(name: str, description: str | None) -> dict[str, Any]:
    schema = {"type": "string", "pattern": _SEGMENT}
    param = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


def _query_schema(field: Field, region: str) -> dict[str, Any]:
    schema = _text_only(_schema(field, True, region))
    schema.pop("description", None)
    return schema


def _operation(op: Operation, route: bool, region: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_FORMAT_PARAM]
    names = set(re.findall(r"{(\w+)}", op.path)) if route else set()
    fields = {f.name: f for f in op.request.fields}
    # The fields the route's path carries, itself or by another name (memberId).
    in_path = {f.name for f in op.request.fields if f.name in names or f.path_name in names}
    by_path_name = {f.path_name or f.name: f for f in op.request.fields}
    for name in sorted(names):
        field = by_path_name.get(name)
        params.append(_path_param(name, field.description if field else None))
    if op.verb in QUERY_VERBS:
        for f in op.request.fields:
            if f.name in names:
                continue
            required = f.required and f.name not in in_path
            param = {
                "name": f.name,
                "in": "query",
                "required": required,
                "schema": _query_schema(f, region),
            }
            if fields[f.name].description:
                param["description"] = _schema(f, True, region)["description"]
            params.append(param)
    description = op.request.description or op.summary
    if op.twilio:
        description += f"\n\nAt Twilio: {op.twilio}"
    spec: dict[str, Any] = {
        "operationId": op.request.name if route else None,
        "summary": op.summary,
        "description": description,
        "tags": [op.tag],
        "parameters": params,
        "responses": _responses(op, names),
        "security": [{"bearerAuth": []}],
    }
    if spec["operationId"] is None:
        del spec["operationId"]
    if op.verb not in QUERY_VERBS:
        spec["requestBody"] = _request_body(op, frozenset(in_path), region)
    return spec


_EVENTS_DESCRIPTION = (
    "Server-sent events (text/event-stream). Each change: `SessionAnswered`, `SessionHeld`, "
    "`SessionDisconnected` or `ActiveSessionsChanged` where they apply, then "
    "`SessionInfoChanged` with the event's `id`; `data` is `{sessionId, session}`, the whole "
    "SessionInfo right after the change. The account's stream also carries "
    "`AgentStateChanged` (with its `id`; `data` is `{userId, agentState, agentStateReason}`) "
    "for each change of an agent's state. Send `Last-Event-ID` to resume: every event kept "
    "(an hour at least) after it, then live ones; `Reset` if some are no longer kept. A "
    "comment line every 15 s keeps the stream open; `Dropped` ends the stream of a client "
    "that fell too far behind (it resumes with Last-Event-ID)."
)
# One server-sent event as a client reads it: `event` is the event's name (SessionInfoChanged,
# Reset, ...), `data` its JSON, `id` what to send as Last-Event-ID.
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
# An event id as the stream writes it (events.parse_id); blank is no resumption. The stream
# trims with Python's `str.strip()`: in a header (Latin-1), these characters.
_HEADER_WS = r"[\u0009-\u000d\u001c-\u0020\u0085\u00a0]"
_EVENT_ID = rf"^{_HEADER_WS}*([0-9]{{1,19}}-[0-9]{{1,19}})?{_HEADER_WS}*$"


def _event_streams() -> dict[str, Any]:
    def stream(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        last = {
            "name": "Last-Event-ID",
            "in": "header",
            "description": "The id of the last event received, to resume after it",
            "schema": {"type": "string", "pattern": _EVENT_ID},
        }
        responses = {
            "200": {
                "description": "The event stream",
                "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            },
            "400": _error("400", "Malformed Last-Event-ID"),
            "401": _error("401"),
            "403": _error("403"),
        }
        if params:
            responses["404"] = _error("404", "No such session of the key's account")
            responses["405"] = _error("405")
        responses["503"] = _error("503")
        return {
            "get": {
                "summary": summary,
                "description": _EVENTS_DESCRIPTION,
                "parameters": [*params, last],
                "responses": responses,
                "security": [{"bearerAuth": []}],
            }
        }

    sid = _path_param("sessionId", "The ID of the session")
    return {
        "/sessions/events": stream("Live changes of every session of the key's account", []),
        "/sessions/{sessionId}/events": stream("Live changes of one session", [sid]),
    }


def openapi(server_url: str | None = None, phone_region: str = "US") -> dict[str, Any]:
    """The OpenAPI 3 document: every operation on its own route and on the predefined ones,
    each request with what the server enforces (`phone_region` reads national numbers)."""
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.verb.lower()] = _operation(op, True, phone_region)
        for prefix in PREDEFINED_PREFIXES:
            route = f"{prefix}/{op.request.name}"
            paths.setdefault(route, {})[op.verb.lower()] = _operation(op, False, phone_region)
    paths |= _event_streams()
    schemas: dict[str, Any] = {
        enum.__name__: {"type": "string", "enum": [m.value for m in enum]} for enum in ENUMS
    }
    requests = {op.request.name for op in OPERATIONS}
    schemas |= {dto.name: _object(dto, dto.name in requests, phone_region) for dto in DTOS}
    schemas |= {
        "ResponseError": {
            "type": "object",
            "properties": {
                "errorCode": {"type": "string"},
                "fieldName": {"type": "string"},
                "message": {"type": "string"},
            },
            "required": ["errorCode", "fieldName", "message"],
        },
        "ResponseStatus": {
            "type": "object",
            "properties": {
                "errorCode": {"type": "string"},
                "message": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ResponseError"},
                },
            },
            "required": ["errorCode", "message", "errors"],
        },
        "ErrorResponse": {
            "type": "object",
            "properties": {"responseStatus": {"$ref": "#/components/schemas/ResponseStatus"}},
            "required": ["responseStatus"],
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Conference orchestrator",
            "version": __version__,
            "description": "Adds people to live Twilio conference calls. Wire-compatible with "
            "ServiceStack (JSON and JSV; predefined routes /api, /json/reply, /jsv/reply).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API key"}
            },
        },
        "security": [{"bearerAuth": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


# --- Python DTOs ("Add ServiceStack Reference") ----------------------------------

_PY_HEADER = '''""" Options:
Date: {date}
Version: {version}
Tip: To override a DTO option, remove "#" prefix before updating
BaseUrl: {base_url}

#GlobalNamespace: 
#AddServiceStackTypes: True
#AddResponseStatus: False
#AddImplicitVersion: 
#AddDescriptionAsComments: True
#IncludeTypes: 
#ExcludeTypes: 
#DefaultImports: {default_imports}
#DataClass: 
#DataClassJson: 
"""

import datetime
import decimal
from marshmallow.fields import *
from servicestack import *
from typing import *
from dataclasses import dataclass, field
from dataclasses_json import dataclass_json, LetterCase, Undefined, config
from enum import Enum, IntEnum
'''  # noqa: W291
_DEFAULT_IMPORTS = ",".join(
    (
        "datetime",
        "decimal",
        "marshmallow.fields:*",
        "servicestack:*",
        "typing:*",
        "dataclasses:dataclass/field",
        "dataclasses_json:dataclass_json/LetterCase/Undefined/config",
        "enum:Enum/IntEnum",
    )
)

VERB_INTERFACES = {
    "GET": "IGet",
    "POST": "IPost",
    "PUT": "IPut",
    "PATCH": "IPatch",
    "DELETE": "IDelete",
}

_DATACLASS = (
    "@dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)\n@dataclass\n"
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _py_type(field: Field) -> str:
    kind = field.type
    if kind == "bool":
        return "bool = False"
    if kind == "bool?":
        return "Optional[bool] = None"
    if kind == "int":
        return "Optional[int] = None"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return f"Optional[{kind.__name__}] = None"
    if kind.startswith("list:"):
        return f"Optional[List[{kind[5:]}]] = None"
    if kind.startswith("dict:"):
        return "Optional[Dict[str, str]] = None"
    if kind.startswith("dto:"):
        return f"Optional[{kind[4:]}] = None"
    return "Optional[str] = None"


def _py_enum(enum: type[Enum]) -> str:
    lines = [f"class {enum.__name__}(str, Enum):"]
    lines += [f"    {_snake(m.value).upper()} = {m.value!r}" for m in enum]
    return "\n".join(lines)


def _py_dto(dto: Dto, op: Operation | None) -> str:
    lines: list[str] = []
    bases: list[str] = [dto.base.name] if dto.base else []
    if op is not None:
        lines.append(f'# @Route("{op.path}", "{op.verb}")')
        if dto.description:
            lines.append(f'# @Api(Description="{dto.description}")')
        returns = "IReturnVoid" if op.response is None else f"IReturn[{op.response.name}]"
        bases += [returns, VERB_INTERFACES[op.verb]]
    lines.append(_DATACLASS + f"class {dto.name}{'(' + ', '.join(bases) + ')' if bases else ''}:")
    if dto.description:
        lines.append(f'    """\n    {dto.description}\n    """\n')
    for f in dto.own_fields:
        if f.description:
            lines.append(f'    # @ApiMember(Description="{f.description}")')
        lines.append(f"    {_snake(f.name)}: {_py_type(f)}")
        if f.description:
            lines.append(f'    """\n    {f.description}\n    """\n')
    if not dto.own_fields:
        lines.append("    pass")
    return "\n".join(lines).rstrip()


def python_types(base_url: str) -> str:
    ops = {op.request.name: op for op in OPERATIONS}
    parts = [
        _PY_HEADER.format(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            version=__version__,
            base_url=base_url,
            default_imports=_DEFAULT_IMPORTS,
        )
    ]
    parts += [_py_enum(enum) for enum in ENUMS]
    parts += [_py_dto(dto, ops.get(dto.name)) for dto in DTOS]
    return "\n\n\n".join(parts) + "\n"
