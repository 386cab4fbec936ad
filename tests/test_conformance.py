"""The emulator against Twilio's own OpenAPI description of API v2010 (twilio-oai).

``tests/data/twilio_api_v2010_excerpt.json`` holds, unchanged, the operations and schemas of
Twilio's description that the orchestrator touches (see its ``_source``): conferences and
participants, calls, API keys, TwiML Apps (Applications) and phone numbers. The tests
here drive the emulator with raw HTTP and with the official ``twilio`` client and check every
answer against it: the exact set of keys of each resource and list page, each value's JSON
type, sid patterns and lengths, enums, RFC 2822 dates, ``uri`` values that are the resource's
own path, the status codes each operation declares, Twilio's error body, and the path, query
and form parameter rules (patterns, bounds, enums, required fields).

Everything that can be is read from the excerpt, not restated: a difference anywhere between
the description and the emulator fails a test. A small checker stands in for a JSON-schema
library (none is a dependency), and is itself checked against every example Twilio publishes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from orchestrator.launch import wait_until
from tests.support import net
from tests.support.emulator import ACCOUNT_SID, AUTH_TOKEN, CALLER_ID, emu_get

pytest_plugins = ("tests.support.emulator",)

EXCERPT_PATH = Path(__file__).parent / "data" / "twilio_api_v2010_excerpt.json"
EXCERPT: dict[str, Any] = json.loads(EXCERPT_PATH.read_text())
SCHEMAS: dict[str, Any] = EXCERPT["schemas"]
ERROR_SCHEMA: dict[str, Any] = EXCERPT["error_response"]["schema"]
API_ROOT = "/2010-04-01"

#: Operations of the excerpt the emulator does not serve: the orchestrator never places a
#: call outside a conference nor deletes call records. Each answers Twilio's error body for
#: a method the path does not take, so a client that tries is refused.
NOT_EMULATED = {"CreateCall": (405, 20004), "DeleteCall": (405, 20004)}

#: Twilio's answer to a path value its pattern rules out; every other parameter is 404 / 20404.
#: A friendly name where the conference's ``CF`` sid is required is Twilio's 405 / 20004.
PATTERN_ANSWERS = {"ConferenceSid": (405, 20004)}

#: Where Twilio's description declares no pattern, what a value that is not a sid gets:
#: create and the participant's ``{CallSid}`` (a call sid or a label) take names; conference
#: update looks the conference up by sid, so a name is not found.
UNPATTERNED_NAME_ANSWERS = {
    ("CreateParticipant", "ConferenceSid"): 201,
    ("FetchParticipant", "CallSid"): 200,
    ("UpdateParticipant", "CallSid"): 200,
    ("DeleteParticipant", "CallSid"): 204,
    ("UpdateConference", "Sid"): 404,
}

RFC2822_SHAPE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} \+0000"
)
SID_PATTERN = re.compile(r"\^([A-Z]{2})\[0-9a-fA-F\]\{32\}\$")
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


# ---------------------------------------------------------------------------- the excerpt


@dataclass(frozen=True)
class Operation:
    """One operation of the excerpt, with what the checks need from it."""

    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return self.spec["operationId"]

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec["parameters"] if p["in"] == where]

    @property
    def path_regex(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.path)))

    @property
    def success_codes(self) -> set[int]:
        return {int(code) for code in self.spec["responses"] if code.startswith("2")}

    def response_schema(self, status: int) -> dict[str, Any] | None:
        return self.spec["responses"].get(str(status), {}).get("schema")

    @property
    def form(self) -> dict[str, Any]:
        body = self.spec.get("requestBody") or {}
        return body.get("properties", {})

    @property
    def required_form(self) -> list[str]:
        return list((self.spec.get("requestBody") or {}).get("required", []))

    def url(self, values: dict[str, str]) -> str:
        """The path with each ``{Param}`` filled from ``values``."""
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], self.path)


OPERATIONS: dict[str, Operation] = {}
for _key, _spec in EXCERPT["operations"].items():
    _method, _path = _key.split(" ", 1)
    OPERATIONS[_spec["operationId"]] = Operation(_method, _path, _spec)
EMULATED = sorted(set(OPERATIONS) - set(NOT_EMULATED))


def schema_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while (name := schema_name(schema)) is not None:
        schema = SCHEMAS[name]
    return schema


def operation_for(method: str, path: str) -> Operation | None:
    for operation in OPERATIONS.values():
        if operation.method == method and operation.path_regex.fullmatch(path):
            return operation
    return None


def fetch_operation(name: str) -> Operation:
    """The GET operation answering one resource of schema ``name`` (its ``uri``)."""
    (operation,) = [
        op
        for op in OPERATIONS.values()
        if op.method == "GET" and schema_name(op.response_schema(200) or {}) == name
    ]
    return operation


def examples() -> Iterator[tuple[str, Operation, int, str, Any]]:
    for operation in OPERATIONS.values():
        for code, response in operation.spec["responses"].items():
            for name, example in (response.get("example") or {}).items():
                yield f"{operation.id}-{name}", operation, int(code), name, example


def examples_of(name: str) -> list[dict[str, Any]]:
    """Every example of a resource of schema ``name``, alone or in a list page."""
    found = []
    for _, operation, status, _, example in examples():
        schema = operation.response_schema(status) or {}
        if schema_name(schema) == name:
            found.append(example)
        for key, prop in schema.get("properties", {}).items():
            if schema_name(prop.get("items", {})) == name:
                found.extend(example[key])
    return found


# ---------------------------------------------------------------------------- the checker


def problems(
    value: Any, schema: dict[str, Any], where: str = "$", nullable: bool = False
) -> list[str]:
    """What is wrong with ``value`` under ``schema``, one line each (empty: it conforms).

    ``nullable`` holds for every property of Twilio's resources (its description makes them
    all nullable); page-level keys are nullable only where the schema says so.
    """
    name = schema_name(schema)
    schema = resolve(schema)
    if value is None:
        return [] if nullable or schema.get("nullable") else [f"{where}: null"]
    if value == "" and nullable and schema.get("type") == "string":
        return []  # Twilio's own examples give an unset sid or URL of a number as ""
    kind = schema.get("type")
    if kind is not None:
        wrong = not isinstance(value, JSON_TYPES[kind])
        if wrong or (kind != "boolean" and isinstance(value, bool)):
            return [f"{where}: {type(value).__name__} {value!r} is not {kind}"]
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {name or ''} {schema['enum']}")
    if kind == "string":
        found += _string_problems(value, schema, where)
    elif kind in ("integer", "number"):
        found += _number_problems(value, schema, where)
    elif kind == "object":
        found += _object_problems(value, schema, where, resource=name is not None)
    elif kind == "array":
        for index, item in enumerate(value):
            found += problems(item, schema.get("items", {}), f"{where}[{index}]")
    return found


def _string_problems(value: str, schema: dict[str, Any], where: str) -> list[str]:
    found = []
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if len(value) < schema.get("minLength", 0):
        found.append(f"{where}: {value!r} shorter than {schema['minLength']}")
    if len(value) > schema.get("maxLength", len(value)):
        found.append(f"{where}: {value!r} longer than {schema['maxLength']}")
    form = schema.get("format")
    if form == "date-time-rfc-2822":
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            moment = None
        if moment is None or not RFC2822_SHAPE.fullmatch(value) or moment.utcoffset() is None:
            found.append(f"{where}: {value!r} is not an RFC 2822 date like Twilio's")
    elif form == "uri" and where.endswith("uri"):  # a resource's or page's own: a path
        if not value.startswith(f"{API_ROOT}/Accounts/"):
            found.append(f"{where}: {value!r} is not a URI under {API_ROOT}/Accounts/")
    elif form == "uri" and not re.match(r"https?://[^/\s]+", value):  # an app's URL
        found.append(f"{where}: {value!r} is not an http(s) URL")
    elif form == "currency" and not re.fullmatch(r"[A-Z]{3}", value):
        found.append(f"{where}: {value!r} is not a currency code")
    return found


def _number_problems(value: float, schema: dict[str, Any], where: str) -> list[str]:
    found = []
    if "minimum" in schema and value < schema["minimum"]:
        found.append(f"{where}: {value} below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        found.append(f"{where}: {value} above {schema['maximum']}")
    if schema.get("format") == "int32" and not -(2**31) <= value < 2**31:
        found.append(f"{where}: {value} is not int32")
    return found


def _object_problems(value: dict, schema: dict[str, Any], where: str, resource: bool) -> list[str]:
    if schema.get("format") == "uri-map":
        return [
            f"{where}.{key}: {uri!r} is not a URI"
            for key, uri in value.items()
            if not isinstance(uri, str) or not uri.startswith(f"{API_ROOT}/Accounts/")
        ]
    properties = schema.get("properties")
    if properties is None:
        return []
    found = []
    if missing := sorted(set(properties) - set(value)):
        found.append(f"{where}: missing keys {missing}")
    if extra := sorted(set(value) - set(properties)):
        found.append(f"{where}: keys Twilio does not have {extra}")
    for key, prop in properties.items():
        if key in value:
            found += problems(value[key], prop, f"{where}.{key}", nullable=resource)
    return found


def error_problems(status: int, body: Any) -> list[str]:
    """Twilio's error body: exactly its four keys, and ``more_info`` naming the code's page."""
    found = problems(body, ERROR_SCHEMA, "error")
    if found:
        return found
    found = []
    if body["status"] != status:
        found.append(f"error: status {body['status']} but HTTP {status}")
    if body["more_info"] != f"https://www.twilio.com/docs/errors/{body['code']}":
        found.append(f"error: more_info {body['more_info']!r}")
    if not body["message"]:
        found.append("error: empty message")
    return found


def page_problems(body: dict[str, Any], records_key: str, path: str) -> list[str]:
    """Paging rules Twilio's examples show: URIs of ``path`` with the list's filters kept,
    then ``PageSize`` and ``Page`` (and a ``PageToken`` on next/previous), and
    ``start``/``end`` bounding the records (``end`` is ``start`` when there are none)."""
    found = []
    page, size, records = body["page"], body["page_size"], body[records_key]
    if body["start"] != page * size:
        found.append(f"page: start {body['start']} != page {page} * page_size {size}")
    end = body["start"] + len(records) - 1 if records else body["start"]
    if body["end"] != end:
        found.append(f"page: end {body['end']} != {end}")
    if len(records) > size:
        found.append(f"page: {len(records)} records > page_size {size}")
    filters = None
    for key, number in (
        ("uri", page),
        ("first_page_uri", 0),
        ("next_page_uri", page + 1),
        ("previous_page_uri", page - 1),
    ):
        if body[key] is None:
            continue
        parts = urlsplit(body[key])
        query = parse_qsl(parts.query)
        names = [name for name, _ in query]
        if parts.path != path:
            found.append(f"page: {key} {body[key]!r} is not under {path}")
        if "PageSize" not in names or "Page" not in names:
            found.append(f"page: {key} {body[key]!r} lacks PageSize and Page")
            continue
        split = names.index("PageSize")
        if names[split : split + 2] != ["PageSize", "Page"] or len(names) - split > 3:
            found.append(f"page: {key} {body[key]!r}: filters, PageSize, Page[, PageToken]")
        if key in ("next_page_uri", "previous_page_uri") and names[-1] != "PageToken":
            found.append(f"page: {key} {body[key]!r} has no PageToken")
        values = dict(query)
        if (values["PageSize"], values["Page"]) != (str(size), str(number)):
            found.append(f"page: {key} {body[key]!r} is not page {number} of size {size}")
        if filters is None:
            filters = query[:split]
        elif query[:split] != filters:
            found.append(f"page: {key} {body[key]!r} does not keep the filters {filters}")
    if body["previous_page_uri"] is not None and page == 0:
        found.append("page: previous_page_uri on page 0")
    return found


def resource_problems(name: str, body: dict[str, Any]) -> list[str]:
    """A resource's own ``uri`` and its ``subresource_uris``, as in Twilio's examples.

    A Key has no ``uri`` (nor account): nothing to check."""
    found: list[str] = []
    if "uri" not in SCHEMAS[name]["properties"]:
        return found
    fetch = fetch_operation(name)
    values = {
        "AccountSid": body["account_sid"],
        "ConferenceSid": body.get("conference_sid"),
        "CallSid": body.get("call_sid"),
        "Sid": body.get("sid"),
    }
    if body["uri"] != fetch.url(values):
        found.append(f"{name}: uri {body['uri']!r} is not {fetch.url(values)!r}")
    if "subresource_uris" in body:
        shown = [set(example["subresource_uris"]) for example in examples_of(name)]
        assert shown and all(keys == shown[0] for keys in shown), f"{name} examples disagree"
        if set(body["subresource_uris"]) != shown[0]:
            found.append(f"{name}: subresource_uris {sorted(body['subresource_uris'])}")
        base = body["uri"].removesuffix(".json") + "/"
        found += [
            f"{name}: subresource {key} {uri!r} not under {base}"
            for key, uri in body["subresource_uris"].items()
            if not (uri.startswith(base) and uri.endswith(".json"))
        ]
    return found


def answer_problems(method: str, path: str, status: int, text: str) -> list[str]:
    """Everything the excerpt says about one answer to ``method path``."""
    operation = operation_for(method, path)
    if operation is None:
        return [f"{method} {path} is no operation of the excerpt"]
    if status >= 400:
        return error_problems(status, json.loads(text))
    if status not in operation.success_codes:
        return [f"{operation.id}: status {status} not in {sorted(operation.success_codes)}"]
    schema = operation.response_schema(status)
    if schema is None:
        return [] if text == "" else [f"{operation.id}: {status} with a body {text!r}"]
    body = json.loads(text)
    found = problems(body, schema, operation.id)
    if found:
        return found
    if (name := schema_name(schema)) is not None:
        return resource_problems(name, body)
    for key, prop in resolve(schema)["properties"].items():
        if (name := schema_name(prop.get("items", {}))) is not None:
            found += page_problems(body, key, path)
            for record in body[key]:
                found += resource_problems(name, record)
    return found


# ---------------------------------------------------------------------------- the checker, checked


@pytest.mark.parametrize(
    ("operation", "status", "example"),
    [pytest.param(op, status, ex, id=ident) for ident, op, status, _, ex in examples()],
)
def test_the_checker_accepts_every_example_twilio_publishes(
    operation: Operation, status: int, example: Any
) -> None:
    schema = operation.response_schema(status)
    assert schema is not None
    assert problems(example, schema, operation.id) == []
    if (name := schema_name(schema)) is not None:
        assert resource_problems(name, example) == []
        return
    for key, prop in resolve(schema)["properties"].items():
        if (name := schema_name(prop.get("items", {}))) is not None:
            assert page_problems(example, key, urlsplit(example["uri"]).path) == []
            for record in example[key]:
                assert resource_problems(name, record) == []


def test_the_checker_refuses_what_twilio_rules_out() -> None:
    schema = {"$ref": "#/components/schemas/api.v2010.account.conference.participant"}
    (example, *_) = examples_of("api.v2010.account.conference.participant")
    assert problems(example, schema) == []
    broken: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("extra key", lambda e: e.update(annotation=None)),
        ("missing key", lambda e: e.pop("queue_time")),
        ("wrong type", lambda e: e.update(muted="false")),
        ("integer for string", lambda e: e.update(queue_time=1000)),
        ("bad pattern", lambda e: e.update(conference_sid="my-room")),
        ("bad length", lambda e: e.update(call_sid=e["call_sid"] + "0")),
        ("bad enum", lambda e: e.update(status="in-progress")),
        ("bad date", lambda e: e.update(date_created="2011-02-18T21:07:19Z")),
        ("not UTC", lambda e: e.update(date_updated="Fri, 18 Feb 2011 22:07:19 +0100")),
    ]
    for what, mutate in broken:
        changed = json.loads(json.dumps(example))
        mutate(changed)
        assert problems(changed, schema), what
    assert error_problems(404, {"code": 20404, "message": "x", "more_info": "x", "status": 404})
    assert error_problems(404, {"code": "20404", "message": "x", "status": 404})


def test_every_operation_of_the_excerpt_is_emulated_or_named() -> None:
    assert set(EMULATED) | set(NOT_EMULATED) == set(OPERATIONS)
    assert set(OPERATIONS) >= set(NOT_EMULATED)


def test_the_call_schema_no_longer_has_annotation() -> None:
    assert "call.annotation" in EXCERPT["history"]
    assert "annotation" not in SCHEMAS["api.v2010.account.call"]["properties"]


# ---------------------------------------------------------------------------- the emulator


@dataclass
class World:
    """A live conference with two answered participants, and a checked HTTP client.

    Every answer that goes through ``request`` is checked against the excerpt, and so is
    the resource its ``uri`` names (fetched again, it must be the same resource).
    """

    url: str
    http: httpx.Client
    name: str
    conference_sid: str = ""
    alice: str = ""
    bob: str = ""
    key: str = ""
    application: str = ""
    number: str = ""
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        self.check(method, urlsplit(path).path, response.status_code, response.text)
        return response

    def check(self, method: str, path: str, status: int, text: str) -> None:
        self.seen.append((method, path, status))
        found = answer_problems(method, path, status, text)
        assert found == [], f"{method} {path} -> {status}: {found}"
        if status in (200, 201) and text:
            self._check_self_uri(json.loads(text))

    def _check_self_uri(self, body: dict[str, Any]) -> None:
        uri = body.get("uri", "")
        if not uri.endswith(".json") or "?" in uri:
            return
        again = self.http.get(uri)
        assert again.status_code == 200, (uri, again.text)
        fetched = again.json()
        assert fetched["uri"] == uri
        for key in ("sid", "call_sid", "conference_sid", "account_sid", "label"):
            assert fetched.get(key) == body.get(key), (uri, key)

    def values(self, **overrides: str) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "ConferenceSid": self.conference_sid,
            "CallSid": self.alice,
            **overrides,
        }

    def path(self, operation: Operation, **overrides: str) -> str:
        """``operation``'s path for this world: ``{Sid}`` is the world's resource of the
        path's kind (a call, a key, a TwiML App, a number; else the conference)."""
        values = self.values(**overrides)
        if "Sid" not in values:
            kinds = {
                "/Calls/": self.alice,
                "/Keys/": self.key,
                "/Applications/": self.application,
                "/IncomingPhoneNumbers/": self.number,
            }
            found = [sid for part, sid in kinds.items() if part in operation.path]
            values["Sid"] = found[0] if found else self.conference_sid
        return operation.url(values)

    def make(self, operation_id: str, form: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a resource with ``operation_id`` (a create of the account), checked."""
        response = self.request("POST", self.path(OPERATIONS[operation_id]), data=form or {})
        assert response.status_code == 201, response.text
        return response.json()

    def create(self, conference: str, to: str, label: str | None = None) -> dict[str, Any]:
        form = {"From": CALLER_ID, "To": to}
        if label is not None:
            form["Label"] = label
        path = OPERATIONS["CreateParticipant"].url(self.values(ConferenceSid=conference))
        response = self.request("POST", path, data=form)
        assert response.status_code == 201, response.text
        return response.json()

    def wait_answered(self, call_sid: str) -> None:
        wait_until(
            lambda: emu_get(self.url, f"calls/{call_sid}").json()["status"] == "in-progress",
            what=f"{call_sid} to be answered",
        )


@pytest.fixture
def world(emu_url: str) -> Iterator[World]:
    with net.client(base_url=emu_url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5) as http:
        room = World(emu_url, http, f"conformance-{uuid.uuid4().hex[:8]}")
        alice = room.create(room.name, "+14155550140", "alice")
        room.conference_sid, room.alice = alice["conference_sid"], alice["call_sid"]
        room.bob = room.create(room.conference_sid, "+14155550141", "bob")["call_sid"]
        room.wait_answered(room.alice)
        room.wait_answered(room.bob)
        room.key = room.make("CreateNewKey", {"FriendlyName": "world"})["sid"]
        room.application = room.make(
            "CreateApplication", {"FriendlyName": room.name, "VoiceUrl": "https://example.com/v"}
        )["sid"]
        room.number = room.make(
            "CreateIncomingPhoneNumber",
            {"PhoneNumber": new_number(), "VoiceApplicationSid": room.application},
        )["sid"]
        yield room


def new_number() -> str:
    """A number no world has bought yet (buying one the account has is refused)."""
    return "+1415" + str(uuid.uuid4().int)[:7]


def drive(room: World, operation: Operation) -> None:
    """Call ``operation`` the ways the orchestrator and Twilio's examples do."""
    path = room.path(operation)
    if operation.id == "CreateParticipant":
        room.create(room.conference_sid, "+14155550142", "by-sid")
        room.create(room.name, "+14155550143", "by-name")
        room.create(f"new-{room.name}", "+14155550144")
    elif operation.id == "ListParticipant":
        room.request("GET", path)
        room.request("GET", path, params={"Muted": "false", "PageSize": "1"})
        room.request("GET", path, params={"Hold": "true"})
    elif operation.id == "FetchParticipant":
        room.request("GET", path)
        room.request("GET", room.path(operation, CallSid="bob"))
    elif operation.id == "UpdateParticipant":
        room.request("POST", path, data={"Muted": "true"})
        room.request("POST", room.path(operation, CallSid="bob"), data={"Hold": "true"})
        room.request("POST", path, data={"CallSidToCoach": room.bob})
    elif operation.id == "DeleteParticipant":
        room.request("DELETE", path)
        room.request("DELETE", room.path(operation, CallSid="bob"))
    elif operation.id == "FetchCall":
        room.request("GET", path)
    elif operation.id == "UpdateCall":
        ringing = room.create(room.conference_sid, "+14155550002")["call_sid"]
        room.request("POST", room.path(operation, Sid=ringing), data={"Status": "canceled"})
        room.request("POST", path, data={"Status": "canceled"})  # answered: unchanged
        room.request("POST", path, data={"Status": "completed"})
        room.request("GET", path)
    elif operation.id == "FetchConference":
        room.request("GET", path)
    elif operation.id == "UpdateConference":
        room.request("POST", path, data={})
        room.request("POST", path, data={"Status": "completed"})
        room.request("GET", path)
    elif operation.id == "ListConference":
        room.request("GET", path)
        room.request("GET", path, params={"FriendlyName": room.name, "Status": "in-progress"})
    elif operation.id == "ListCall":
        room.request("GET", path)
        room.request("GET", path, params={"To": "+14155550140", "From": CALLER_ID})
        room.request("GET", path, params={"Status": "in-progress", "PageSize": "1"})
        room.request("GET", path, params={"StartTime>": "2020-01-01", "EndTime<": "2020-01-01"})
    elif operation.id in ("CreateNewKey", "CreateApplication"):
        room.make(operation.id)
        room.make(operation.id, {"FriendlyName": "second"})
    elif operation.id == "CreateIncomingPhoneNumber":
        room.make(operation.id, {"PhoneNumber": new_number(), "VoiceUrl": "https://e.com/v"})
        room.make(operation.id, {"AreaCode": "415", "FriendlyName": "by area"})
    elif operation.id in ("ListKey", "ListApplication", "ListIncomingPhoneNumber"):
        room.request("GET", path)
        room.request("GET", path, params={"PageSize": "1", "Page": "1"})
        if operation.id == "ListApplication":
            room.request("GET", path, params={"FriendlyName": room.name})
        if operation.id == "ListIncomingPhoneNumber":
            room.request("GET", path, params={"PhoneNumber": "+1415", "FriendlyName": "x"})
    elif operation.id in ("FetchKey", "FetchApplication", "FetchIncomingPhoneNumber"):
        room.request("GET", path)
    elif operation.id == "UpdateKey":
        room.request("POST", path, data={"FriendlyName": "renamed"})
    elif operation.id == "UpdateApplication":
        room.request("POST", path, data={"VoiceUrl": "https://e.com/w", "VoiceMethod": "GET"})
    elif operation.id == "UpdateIncomingPhoneNumber":
        room.request("POST", path, data={"VoiceUrl": "https://e.com/w", "VoiceMethod": "GET"})
        room.request("POST", path, data={"VoiceApplicationSid": ""})
    elif operation.id in ("DeleteKey", "DeleteApplication", "DeleteIncomingPhoneNumber"):
        room.request("DELETE", path)
        gone = room.request("GET", path)
        assert (gone.status_code, gone.json()["code"]) == (404, 20404)
    else:  # pragma: no cover - a new operation in the excerpt needs a driver here
        raise AssertionError(f"no driver for {operation.id}")


@pytest.mark.parametrize("operation_id", EMULATED)
def test_every_answer_matches_twilios_description(world: World, operation_id: str) -> None:
    operation = OPERATIONS[operation_id]
    drive(world, operation)
    driven = {(m, status) for m, path, status in world.seen if operation.path_regex.fullmatch(path)}
    assert {status for m, status in driven if m == operation.method} == operation.success_codes


def test_a_deleted_or_ended_participant_is_gone(world: World) -> None:
    delete = OPERATIONS["DeleteParticipant"]
    world.request("DELETE", world.path(delete))
    for operation in (OPERATIONS["FetchParticipant"], delete):
        gone = world.request(operation.method, world.path(operation))
        assert (gone.status_code, gone.json()["code"]) == (404, 20404)
    listed = world.request("GET", world.path(OPERATIONS["ListParticipant"])).json()
    assert [p["call_sid"] for p in listed["participants"]] == [world.bob]


class CheckingHttpClient(TwilioHttpClient):
    """The client's own HTTP client, checking each answer as it arrives (before the next
    request can change what its ``uri`` names)."""

    def __init__(self, check: Callable[[str, str, int, str], None]) -> None:
        super().__init__()
        self.check = check
        self.answers = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        response = super().request(method, url, *args, **kwargs)
        self.check(method.upper(), urlsplit(url).path, response.status_code, response.text)
        self.answers += 1
        return response


def official_client(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> tuple[Client, CheckingHttpClient]:
    """The twilio library's client pointed at the emulator (no region or edge rewriting
    its host), every answer checked against Twilio's description as it arrives."""
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    checking = CheckingHttpClient(world.check)
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=checking)
    client.api.base_url = world.url
    return client, checking


def test_the_official_client_gets_twilios_answers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, checking = official_client(world, monkeypatch)
    conference = client.conferences(world.conference_sid)

    carol = client.conferences(world.name).participants.create(
        from_=CALLER_ID, to="+14155550145", label="carol"
    )
    assert carol.conference_sid == world.conference_sid and carol.queue_time == "0"
    assert conference.participants(carol.call_sid).fetch().queue_time is None
    assert conference.participants("alice").update(muted=True, hold=True).hold is True
    assert [p.label for p in conference.participants.list(muted=True)] == ["alice"]
    assert len(conference.participants.list(page_size=1)) == 3  # follows next_page_uri
    assert conference.participants("carol").delete() is True
    call = client.calls(world.bob).fetch()
    assert call.date_created is not None and call.to_formatted == "(415) 555-0141"
    assert client.calls(world.bob).update(status="completed").status == "completed"
    listed = client.conferences.list(friendly_name=world.name)
    assert [c.sid for c in listed] == [world.conference_sid]
    assert conference.fetch().status == "in-progress"
    assert conference.update(status="completed").status == "completed"
    assert checking.answers == 13  # the three pages of the paged list included


def test_the_official_client_gets_twilios_answers_for_calls_keys_apps_and_numbers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call per resource the way the worker and ``orchestrator twilio setup`` make it."""
    client, checking = official_client(world, monkeypatch)
    account = client.api.v2010.account

    world.request("DELETE", world.path(OPERATIONS["DeleteParticipant"], CallSid="bob"))
    since = datetime.now(UTC) - timedelta(minutes=1)
    calls = account.calls.list(to="+14155550141", from_=CALLER_ID, start_time_after=since)
    assert [c.sid for c in calls] == [world.bob]  # ended, and still listed
    live = {c.sid for c in account.calls.list(status="in-progress", page_size=1000)}
    assert world.alice in live and world.bob not in live

    new = account.new_keys.create(friendly_name="softphones")
    assert new.secret and new.sid.startswith("SK")
    assert account.keys(new.sid).fetch().friendly_name == "softphones"
    assert account.keys(new.sid).update(friendly_name="renamed").friendly_name == "renamed"
    assert new.sid in {k.sid for k in account.keys.list()}
    assert account.keys(new.sid).delete() is True

    app = account.applications.create(
        friendly_name="agents", voice_url="https://example.com/voice", voice_method="POST"
    )
    assert [a.sid for a in account.applications.list(friendly_name="agents")] == [app.sid]
    updated = account.applications(app.sid).update(voice_url="https://example.com/v2")
    assert updated.voice_url == "https://example.com/v2" and updated.voice_method == "POST"

    number = account.incoming_phone_numbers.create(phone_number=new_number())
    assert account.incoming_phone_numbers(number.sid).fetch().phone_number == number.phone_number
    listed = account.incoming_phone_numbers.list(phone_number=number.phone_number)
    assert [n.sid for n in listed] == [number.sid]
    routed = account.incoming_phone_numbers(number.sid).update(voice_application_sid=app.sid)
    assert routed.voice_application_sid == app.sid
    assert account.incoming_phone_numbers(number.sid).delete() is True
    assert account.applications(app.sid).delete() is True
    assert checking.answers == 16


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("ParentCallSid", "not-a-sid"), ("Status", "bogus"), ("StartTime>", "yesterday")],
)
def test_calls_list_filters_outside_the_description_are_400(
    world: World, parameter: str, value: str
) -> None:
    path = world.path(OPERATIONS["ListCall"])
    answer = world.request("GET", path, params={parameter: value})
    assert (answer.status_code, answer.json()["code"]) == (400, 20001), answer.text


def test_a_key_secret_is_only_in_the_answer_to_its_create(world: World) -> None:
    created = world.make("CreateNewKey", {"FriendlyName": "once"})
    assert created["secret"]
    fetched = world.request("GET", world.path(OPERATIONS["FetchKey"], Sid=created["sid"]))
    listed = world.request("GET", world.path(OPERATIONS["ListKey"])).json()["keys"]
    for shown in [fetched.json(), *listed]:
        assert "secret" not in shown and created["secret"] not in json.dumps(shown)


def bad_values(pattern: str) -> list[str]:
    """Values a sid pattern rules out: a name, wrong length, case or kind, non-hex digits."""
    match = SID_PATTERN.fullmatch(pattern)
    assert match is not None, pattern
    prefix = match.group(1)
    other = "ZZ" if prefix != "ZZ" else "YY"
    values = [
        "a-friendly-name",
        prefix + "0" * 31,
        prefix + "0" * 33,
        prefix.lower() + "0" * 32,
        other + "0" * 32,
        prefix + "g" * 32,
    ]
    assert not any(re.search(pattern, value) for value in values)
    return values


PATTERNED = [
    pytest.param(op_id, param["name"], param["schema"]["pattern"], id=f"{op_id}-{param['name']}")
    for op_id in EMULATED
    for param in OPERATIONS[op_id].parameters("path")
    if "pattern" in param["schema"]
]


def _valid_form(operation: Operation) -> dict[str, str]:
    """The least form ``operation`` takes: its required parameters (a number to buy for a
    number create, which needs a ``PhoneNumber`` or an ``AreaCode``)."""
    if operation.id == "CreateIncomingPhoneNumber":
        return {"PhoneNumber": new_number()}
    return {
        name: {"From": CALLER_ID, "To": "+14155550146"}[name] for name in operation.required_form
    }


@pytest.mark.parametrize(("operation_id", "parameter", "pattern"), PATTERNED)
def test_every_path_pattern_is_enforced(
    world: World, emu_url: str, operation_id: str, parameter: str, pattern: str
) -> None:
    operation = OPERATIONS[operation_id]
    status, code = PATTERN_ANSWERS.get(parameter, (404, 20404))
    for value in bad_values(pattern):
        path = world.path(operation, **{parameter: value})
        answer = world.request(operation.method, path, data=_valid_form(operation) or None)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (path, answer.text)
    # A well-formed sid that names nothing is not found.
    match = SID_PATTERN.fullmatch(pattern)
    assert match is not None
    path = world.path(operation, **{parameter: match.group(1) + "0" * 32})
    answer = world.request(operation.method, path, data=_valid_form(operation) or None)
    assert (answer.status_code, answer.json()["code"]) == (404, 20404), path
    assert emu_get(emu_url, "creates").json()["total"] == 2  # the world's two, nothing more


UNPATTERNED = [
    pytest.param(op_id, param["name"], id=f"{op_id}-{param['name']}")
    for op_id in EMULATED
    for param in OPERATIONS[op_id].parameters("path")
    if "pattern" not in param["schema"]
]


@pytest.mark.parametrize(("operation_id", "parameter"), UNPATTERNED)
def test_where_no_pattern_is_declared_names_are_answered_as_twilio_does(
    world: World, operation_id: str, parameter: str
) -> None:
    operation = OPERATIONS[operation_id]
    name = {"ConferenceSid": world.name, "CallSid": "alice", "Sid": world.name}[parameter]
    answer = world.request(
        operation.method, world.path(operation, **{parameter: name}), data=_valid_form(operation)
    )
    assert answer.status_code == UNPATTERNED_NAME_ANSWERS[(operation_id, parameter)], answer.text


@pytest.mark.parametrize("operation_id", sorted(NOT_EMULATED))
def test_operations_not_emulated_are_refused_with_twilios_error_body(
    world: World, operation_id: str
) -> None:
    operation = OPERATIONS[operation_id]
    answer = world.http.request(operation.method, world.path(operation))
    assert (answer.status_code, answer.json()["code"]) == NOT_EMULATED[operation_id]
    assert error_problems(answer.status_code, answer.json()) == []


REQUIRED = [
    pytest.param(op_id, name, id=f"{op_id}-{name}")
    for op_id in EMULATED
    for name in OPERATIONS[op_id].required_form
]


@pytest.mark.parametrize(("operation_id", "missing"), REQUIRED)
def test_required_form_parameters_are_required(
    world: World, operation_id: str, missing: str
) -> None:
    operation = OPERATIONS[operation_id]
    form = _valid_form(operation)
    del form[missing]
    answer = world.request(operation.method, world.path(operation), data=form)
    assert answer.status_code == 400, answer.text


def _ruled_out(prop: dict[str, Any]) -> list[str]:
    """Form values the property's schema rules out (enum, pattern)."""
    schema = resolve(prop)
    if "enum" in schema:
        return ["bogus", "PATCH"]
    if "pattern" in schema:
        return ["not-a-sid"]
    return []


CONSTRAINED_FORM = [
    pytest.param(op_id, name, value, id=f"{op_id}-{name}-{value}")
    for op_id in EMULATED
    for name, prop in OPERATIONS[op_id].form.items()
    for value in _ruled_out(prop)
]


@pytest.mark.parametrize(("operation_id", "parameter", "value"), CONSTRAINED_FORM)
def test_form_values_outside_the_description_are_400(
    world: World, emu_url: str, operation_id: str, parameter: str, value: str
) -> None:
    operation = OPERATIONS[operation_id]
    form = {**_valid_form(operation), parameter: value}
    answer = world.request(operation.method, world.path(operation), data=form)
    assert answer.status_code == 400, answer.text
    assert emu_get(emu_url, "creates").json()["total"] == 2


ENUM_FORM = [
    pytest.param(op_id, name, value, id=f"{op_id}-{name}-{value}")
    for op_id in EMULATED
    for name, prop in OPERATIONS[op_id].form.items()
    for value in resolve(prop).get("enum", [])
]


@pytest.mark.parametrize(("operation_id", "parameter", "value"), ENUM_FORM)
def test_every_enum_value_is_accepted(
    world: World, operation_id: str, parameter: str, value: str
) -> None:
    operation = OPERATIONS[operation_id]
    form = {**_valid_form(operation), parameter: value}
    answer = world.request(operation.method, world.path(operation), data=form)
    assert answer.status_code in operation.success_codes, answer.text


BOUNDED_QUERY = [
    pytest.param(op_id, param["name"], value, id=f"{op_id}-{param['name']}-{value}")
    for op_id in EMULATED
    for param in OPERATIONS[op_id].parameters("query")
    for bound, step in (("minimum", -1), ("maximum", 1))
    if bound in param["schema"]
    for value in [param["schema"][bound] + step]
]


@pytest.mark.parametrize(("operation_id", "parameter", "value"), BOUNDED_QUERY)
def test_query_values_out_of_bounds_are_400(
    world: World, operation_id: str, parameter: str, value: int
) -> None:
    operation = OPERATIONS[operation_id]
    answer = world.request(operation.method, world.path(operation), params={parameter: value})
    assert answer.status_code == 400, answer.text


def test_list_filters_are_kept_in_every_page_uri(world: World) -> None:
    update = OPERATIONS["UpdateParticipant"]
    world.request("POST", world.path(update), data={"Hold": "true"})
    world.request("POST", world.path(update, CallSid=world.bob), data={"Hold": "true"})
    path = world.path(OPERATIONS["ListParticipant"])
    first = world.request("GET", path, params={"Hold": "true", "PageSize": 1}).json()
    assert [p["call_sid"] for p in first["participants"]] == [world.alice]
    assert first["uri"] == f"{path}?Hold=true&PageSize=1&Page=0"
    second = world.request("GET", first["next_page_uri"]).json()
    assert [p["call_sid"] for p in second["participants"]] == [world.bob]
    assert second["next_page_uri"] is None
    assert second["previous_page_uri"].startswith(f"{path}?Hold=true&PageSize=1&Page=0&")
    empty = world.request("GET", path, params={"Hold": "false"}).json()
    (twilios,) = [
        example
        for _, operation, _, name, example in examples()
        if name == "readEmpty" and operation.id == "ListParticipant"
    ]

    def shape(page: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in page.items() if not key.endswith("_uri")}

    assert {k: v for k, v in shape(empty).items() if k != "uri"} == {
        k: v for k, v in shape(twilios).items() if k != "uri"
    }
    assert empty["uri"] == empty["first_page_uri"] == f"{path}?Hold=false&PageSize=50&Page=0"
