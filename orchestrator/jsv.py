"""JSV, the text format of ServiceStack's TypeSerializer, for clients that ask for it.

The service is wire-compatible with a ServiceStack API, and ServiceStack clients may send
and accept `text/jsv` (or `application/jsv`). The format, as ServiceStack.Text writes it:

* objects `{key:value,key:value}`, lists `[a,b]`, no whitespace anywhere;
* a string is written raw unless it contains one of `"` `:` `,` `{` `}` `[` `]` CR LF
  (`JsWriter.EscapeChars`), in which case it is wrapped in `"` with each inner `"` doubled
  (`StringExtensions.EncodeJsv`); the empty string is `""` (`JsvTypeSerializer.WriteString`);
* null properties and null dictionary values are omitted; a null list item is written as
  nothing, so `["a", None]` is `[a,]`;
* booleans `True`/`False`, numbers unquoted, enums by name.

Like ServiceStack's reader (`JsvTypeSerializer.EatValue`), an unquoted value runs to the next
`,` `}` or `]`, so a sloppy `{at:12:30}` still reads `12:30`, and `[a,]` ends with an empty item.

JSV carries no types: `loads` returns dicts, lists and `str` only, and typed conversion is left
to the caller, who knows the DTO (`to_bool` is the reader side of booleans).

Where this module departs from ServiceStack, and why:

* The reader skips whitespace between tokens and around unquoted tokens, so that the indented
  display form (`JsvFormatter`, shown on ServiceStack's metadata pages) can be pasted in.
  ServiceStack trims property names only, so `{a: b}` is `" b"` to it and `"b"` to us.
* So that every string survives `loads(dumps(s))`, `dumps` also quotes a string with leading or
  trailing whitespace. ServiceStack reads quoted strings verbatim, so it still understands us.
* Floats are written in positional notation (`0.00001`, not `1E-05`) and integral ones without
  `.0`, as .NET does for `1.0`; both forms parse in .NET.
* `None` at top level serialises to the empty string (ServiceStack returns null, an empty body).
  `None` in a list is an empty item and reads back as `""`; in particular `[None]` becomes `[]`.
* Nesting is limited to 32 levels both ways, so nothing `dumps` writes is refused by `loads`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["CONTENT_TYPE", "MEDIA_TYPES", "JsvError", "dumps", "loads", "to_bool"]

MEDIA_TYPES = ("text/jsv", "application/jsv")
CONTENT_TYPE = "text/jsv; charset=utf-8"

_MAX_DEPTH = 32
_NEEDS_QUOTES = re.compile(r'[":,{}\[\]\r\n]')
_VALUE_END = re.compile(r"[,}\]]")
_KEY_END = re.compile(r"[:,{}\[\]]")


class JsvError(ValueError):
    """Malformed JSV, a `ValueError` so that request parsing answers it with a 400."""

    def __init__(self, message: str, position: int | None = None) -> None:
        if position is not None:
            message = f"{message} at position {position}"
        super().__init__(message)
        self.position = position


def dumps(value: Any) -> str:
    """Serialise compactly, as ServiceStack writes a response, so its clients can read it."""
    out: list[str] = []
    _write(value, out, 0)
    return "".join(out)


def loads(text: str) -> Any:
    """Parse into dicts, lists and strings; any malformed input raises `JsvError`, nothing else."""
    if not isinstance(text, str):
        raise TypeError(f"JSV text must be str, not {type(text).__name__}")
    return _Reader(text).document()


def to_bool(text: str) -> bool:
    """Read a JSV boolean: ServiceStack writes `True`/`False`, and clients send any case or 1/0.

    Stricter than ServiceStack's `ParseBoolean` (which also takes t/y/on and reads "" as false),
    so that a typo is answered with a 400 rather than silently taken as false.
    """
    word = text.strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise JsvError(f"not a boolean: {text[:40]!r}")


def _write(value: Any, out: list[str], depth: int) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        _check_depth(depth)
        out.append("{")
        first = True
        for key, item in value.items():
            if item is None:
                continue
            if not first:
                out.append(",")
            first = False
            out.append(_scalar(key))
            out.append(":")
            _write(item, out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        _check_depth(depth)
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        out.append(_scalar(value))


def _check_depth(depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise JsvError(f"nesting deeper than {_MAX_DEPTH} levels")


def _scalar(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else value.name
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot serialise {type(value).__name__} as JSV")


def _encode_string(text: str) -> str:
    if text and not (_NEEDS_QUOTES.search(text) or text[0].isspace() or text[-1].isspace()):
        return text
    return '"' + text.replace('"', '""') + '"'


def _encode_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")


class _Reader:
    """A recursive-descent parser over one string, tracking the position for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def document(self) -> Any:
        value = self.value(0)
        self.skip_whitespace()
        if self.pos < len(self.text):
            raise JsvError("unexpected trailing characters", self.pos)
        return value

    def value(self, depth: int) -> Any:
        self.skip_whitespace()
        if self.pos >= len(self.text):
            return ""
        char = self.text[self.pos]
        if char == "{":
            return self.map(depth + 1)
        if char == "[":
            return self.list(depth + 1)
        if char == '"':
            return self.quoted()
        return self.bare(_VALUE_END)

    def map(self, depth: int) -> dict[str, Any]:
        start = self.enter(depth)
        result: dict[str, Any] = {}
        if self.peek() == "}":
            self.pos += 1
            return result
        while True:
            key = self.key()
            result[key] = self.value(depth)
            if self.separator("}", start):
                return result

    def list(self, depth: int) -> list[Any]:
        start = self.enter(depth)
        result: list[Any] = []
        if self.peek() == "]":
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth))
            if self.separator("]", start):
                return result

    def enter(self, depth: int) -> int:
        start = self.pos
        if depth > _MAX_DEPTH:
            raise JsvError(f"nesting deeper than {_MAX_DEPTH} levels", start)
        self.pos += 1
        return start

    def separator(self, close: str, start: int) -> bool:
        """Consume `,` (more items follow) or the closing bracket (done)."""
        char = self.peek()
        if char == ",":
            self.pos += 1
            return False
        if char == close:
            self.pos += 1
            return True
        if char == "":
            opener = "{" if close == "}" else "["
            raise JsvError(f"missing {close!r} for the {opener!r} opened", start)
        raise JsvError(f"expected ',' or {close!r} but found {char!r}", self.pos)

    def key(self) -> str:
        char = self.peek()
        if char == '"':
            key = self.quoted()
        elif char in ("", "{", "[", "}", "]", ","):
            raise JsvError("expected a key", self.pos)
        else:
            key = self.bare(_KEY_END)
        char = self.peek()
        if char != ":":
            found = f"found {char!r}" if char else "reached the end"
            raise JsvError(f"expected ':' after key {key[:40]!r} but {found}", self.pos)
        self.pos += 1
        return key

    def quoted(self) -> str:
        text, start = self.text, self.pos
        parts: list[str] = []
        pos = start + 1
        while True:
            quote = text.find('"', pos)
            if quote < 0:
                raise JsvError("unterminated quoted string", start)
            parts.append(text[pos:quote])
            if text.startswith('"', quote + 1):
                parts.append('"')
                pos = quote + 2
            else:
                self.pos = quote + 1
                return "".join(parts)

    def bare(self, end: re.Pattern[str]) -> str:
        match = end.search(self.text, self.pos)
        stop = match.start() if match else len(self.text)
        token = self.text[self.pos : stop].rstrip()
        self.pos = stop
        return token

    def peek(self) -> str:
        """The next character that is not whitespace, or '' at the end of the text."""
        self.skip_whitespace()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos
