"""API metadata generated from the DTO and operation declarations the server
itself uses: an OpenAPI 3 document and ServiceStack-style Python DTOs, so
neither can drift from what is served."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from orchestrator import __version__
from orchestrator.api.operations import OPERATIONS, PREDEFINED_PREFIXES, Operation
from orchestrator.dto import DTOS, ENUMS, Dto, Field

# Verbs whose requests carry their fields in the query string (no body), as the
# ServiceStack clients send them.
QUERY_VERBS = ("GET", "DELETE")

ERROR_STATUSES = {
    "400": "Bad input: one `errors` entry per bad field",
    "401": "No or unknown API key",
    "403": "The key lacks the required role",
    "404": "No such session (or member) in the key's account",
    "405": "The operation does not take this HTTP method",
    "409": "The session has ended (or the member has left the call)",
    "413": "Request body too large",
    "415": "Unsupported Content-Type",
    "503": "State store unavailable; retry",
}


# --- OpenAPI ----------------------------------------------------------------


def _schema(field: Field) -> dict[str, Any]:
    kind = field.type
    if kind == "bool":
        schema: dict[str, Any] = {"type": "boolean"}
    elif kind == "bool?":
        schema = {"type": "boolean", "nullable": True}
    elif kind == "int":
        schema = {"type": "integer", "format": "int32", "nullable": True}
    elif isinstance(kind, type) and issubclass(kind, Enum):
        schema = {"allOf": [{"$ref": f"#/components/schemas/{kind.__name__}"}]}
    elif kind.startswith("list:"):
        ref = {"$ref": f"#/components/schemas/{kind[5:]}"}
        schema = {"type": "array", "items": ref, "nullable": True}
    elif kind.startswith("dict:"):
        schema = {"type": "object", "additionalProperties": {"type": "string"}, "nullable": True}
    else:
        schema = {"type": "string", "nullable": True}
    if field.description:
        schema["description"] = field.description
    return schema


def _object(dto: Dto) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: _schema(f) for f in dto.fields},
    }
    if dto.description:
        schema["description"] = dto.description
    return schema


def _request_body(dto: Dto) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{dto.name}"}
    return {
        "content": {
            "application/json": {"schema": ref},
            "text/jsv": {"schema": {"type": "string"}},
            "application/x-www-form-urlencoded": {"schema": ref},
        }
    }


def _responses(op: Operation) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    jsv = {"schema": {"type": "string"}}
    responses: dict[str, Any]
    if op.response is None:
        responses = {"204": {"description": "No Content"}}
    else:
        ok = {"$ref": f"#/components/schemas/{op.response.name}"}
        responses = {
            "200": {
                "description": op.response.name,
                "content": {"application/json": {"schema": ok}, "text/jsv": jsv},
            }
        }
    for status, description in ERROR_STATUSES.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": error}, "text/jsv": jsv},
        }
    return responses


_FORMAT_PARAM = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "Response format; overrides the Accept header",
    "schema": {"type": "string", "enum": ["json", "jsv"]},
}


def _operation(op: Operation, path_params: bool, verb: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_FORMAT_PARAM]
    names = set(re.findall(r"{(\w+)}", op.path)) if path_params else set()
    for name in sorted(names):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if verb in QUERY_VERBS:
        params += [
            {
                "name": f.name,
                "in": "query",
                "required": False,
                "schema": {k: v for k, v in _schema(f).items() if k != "description"},
            }
            for f in op.request.fields
            if f.name not in names
        ]
    description = op.request.description or op.summary
    if op.twilio:
        description += f"\n\nAt Twilio: {op.twilio}"
    spec: dict[str, Any] = {
        "operationId": op.request.name if path_params else None,
        "summary": op.summary,
        "description": description,
        "tags": ["sessions"],
        "parameters": params,
        "responses": _responses(op),
        "security": [{"bearerAuth": []}],
    }
    if spec["operationId"] is None:
        del spec["operationId"]
    if verb not in QUERY_VERBS:
        spec["requestBody"] = _request_body(op.request)
    return spec


_EVENTS_DESCRIPTION = (
    "Server-sent events (text/event-stream). Each change: `SessionAnswered`, `SessionHeld`, "
    "`SessionDisconnected` or `ActiveSessionsChanged` where they apply, then "
    "`SessionInfoChanged` with the event's `id`; `data` is `{sessionId, session}`, the whole "
    "SessionInfo right after the change. Send `Last-Event-ID` to resume: every event kept "
    "(an hour at least) after it, then live ones; `Reset` if some are no longer kept. A "
    "comment line every 15 s keeps the stream open; `Dropped` ends the stream of a client "
    "that fell too far behind (it resumes with Last-Event-ID)."
)


def _event_streams() -> dict[str, Any]:
    def stream(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        last = {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        return {
            "get": {
                "summary": summary,
                "description": _EVENTS_DESCRIPTION,
                "parameters": [*params, last],
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": {"description": "Malformed Last-Event-ID", "content": error},
                    "401": {"description": "No valid API key", "content": error},
                    "404": {
                        "description": "No such session of the key's account",
                        "content": error,
                    },
                },
            }
        }

    sid = {"name": "sessionId", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/sessions/events": stream("Live changes of every session of the key's account", []),
        "/sessions/{sessionId}/events": stream("Live changes of one session", [sid]),
    }


def openapi(server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.verb.lower()] = _operation(op, True, op.verb)
        for prefix in PREDEFINED_PREFIXES:
            route = f"{prefix}/{op.request.name}"
            paths.setdefault(route, {})[op.verb.lower()] = _operation(op, False, op.verb)
    paths |= _event_streams()
    schemas: dict[str, Any] = {
        enum.__name__: {"type": "string", "enum": [m.value for m in enum]} for enum in ENUMS
    }
    schemas |= {dto.name: _object(dto) for dto in DTOS}
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
