"""Reading a request DTO from wherever the client put its values.

Bodies may be JSON, JSV or form-encoded; query-string values fill the DTO too;
path values win. Property names match case-insensitively, as in ServiceStack.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from orchestrator import jsv
from orchestrator.api.formats import JSON, JSV, request_format
from orchestrator.body import read_body
from orchestrator.dto import Field
from orchestrator.errors import ApiError, FieldError, validation


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_body(media_type: str, body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    fmt = JSON if media_type == "" else request_format(media_type)
    if fmt is not None:
        try:
            data = jsv.loads(body.decode("utf-8-sig")) if fmt == JSV else json.loads(body)
        except (ValueError, UnicodeDecodeError):
            message = f"The request body is not valid {fmt.upper()}"
            raise ApiError(400, "SerializationException", message) from None
        if not isinstance(data, dict):
            raise ApiError(400, "SerializationException", "The request body must be an object")
        return data
    if media_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(400, "SerializationException", "The form body is not UTF-8") from None
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"Content-Type {media_type!r} is not supported; send application/json, text/jsv "
        "or application/x-www-form-urlencoded",
    )


Value = str | bool | int | None

# What the handlers trim off text, and what a blank value holds: the whitespace of
# ECMA-262's `\s`, the regular expressions JSON Schema's patterns are written in, so the
# API's document states exactly what the server takes for blank (metadata builds its
# patterns from this). Python's own `str.strip()` differs (U+001C..U+001F, U+0085).
WHITESPACE = (
    "\t\n\v\f\r \xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def trim(value: str) -> str:
    """`value` without the leading and trailing whitespace a blank value is made of."""
    return value.strip(WHITESPACE)


async def read_dto(request: Request, fields: tuple[Field, ...]) -> dict[str, Value]:
    """The DTO's fields from body < query string < path, names matched case-insensitively,
    each as its declared type: strings, booleans (true/false, any case, or 1/0), whole
    numbers, and enums by name (any case, as ServiceStack reads them). A value that is not
    of its field's type is a 400 naming the field."""
    body = parse_body(_media_type(request), await read_body(request))
    by_lower = {f.name.lower(): f for f in fields}
    values: dict[str, Value] = {f.name: None for f in fields}
    errors: list[FieldError] = []
    for source in (body, request.query_params, request.path_params):
        for key, value in source.items():
            field = by_lower.get(str(key).lower())
            if field is None:
                continue
            try:
                values[field.name] = _typed(field, value)
            except ValueError as exc:
                errors.append(FieldError(_pascal(field.name), "InvalidValue", str(exc)))
    if errors:
        raise validation(errors)
    return values


def _typed(field: Field, value: Any) -> Value:
    if value is None:
        return None
    kind, label = field.type, f"'{_words(field.name)}'"
    if kind in ("bool", "bool?"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise ValueError(f"{label} must be true or false.")
    if kind == "int":
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        # An Int32, as the DTO declares it: a bigger one would reach Redis as a float.
        if number is not None and _INT32_MIN <= number <= _INT32_MAX:
            return number
        raise ValueError(f"{label} must be a whole number.")
    if isinstance(kind, type) and issubclass(kind, Enum):
        names = {m.value.lower(): m.value for m in kind}
        if isinstance(value, str) and value.strip().lower() in names:
            return names[value.strip().lower()]
        raise ValueError(f"{label} must be one of {', '.join(m.value for m in kind)}.")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{label} must be a string.")


_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _words(name: str) -> str:
    """memberToAdd -> Member To Add, as ServiceStack's validators name fields."""
    out = ""
    for ch in _pascal(name):
        out += (" " + ch) if ch.isupper() and out else ch
    return out


def field_error(name: str, code: str, message: str) -> FieldError:
    return FieldError(_pascal(name), code, message.replace("{field}", f"'{_words(name)}'"))
