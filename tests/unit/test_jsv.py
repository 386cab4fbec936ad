"""The JSV codec: ServiceStack's wire form, the seed's samples, round trips and fuzzing."""

from __future__ import annotations

import contextlib
import enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import jsv
from orchestrator.jsv import JsvError, dumps, loads, to_bool

DATA = Path(__file__).parents[1] / "data"  # tests/data

# Characters that matter to JSV, mixed into arbitrary text so hypothesis hits them often.
_SPECIAL = st.sampled_from([*'",:{}[]\r\n\t ', "\u00a0", "\x1f", "é", "漢", "🙂", '""'])
texts = st.one_of(
    st.text(),
    st.lists(st.one_of(_SPECIAL, st.text(max_size=3)), max_size=8).map("".join),
)
values = st.recursive(
    texts,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(texts, children, max_size=5),
    ),
    max_leaves=25,
)


class Channel(enum.Enum):
    Voice = 1
    Chat = 2


class Direction(enum.StrEnum):
    Incoming = "Incoming"
    Outgoing = "out going"


class Level(enum.IntEnum):
    Low = 1


def test_media_types() -> None:
    assert jsv.MEDIA_TYPES == ("text/jsv", "application/jsv")
    assert jsv.CONTENT_TYPE == "text/jsv; charset=utf-8"


# --- dumps: the compact form ServiceStack writes ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": "x,y"}, '{a:"x,y"}'),
        ('say "hi"', '"say ""hi"""'),
        ("plain text", "plain text"),
        ("it's", "it's"),
        ("a\tb", "a\tb"),
        ("", '""'),
        (True, "True"),
        (False, "False"),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        (1.0, "1"),
        (0.1, "0.1"),
        (1e-05, "0.00001"),
        (1e16, "10000000000000000"),
        ("2026-11-28T04:10:00.123Z", '"2026-11-28T04:10:00.123Z"'),
        ("a:b", '"a:b"'),
        ("{x}", '"{x}"'),
        ("[x]", '"[x]"'),
        ("line\nbreak", '"line\nbreak"'),
        ("cr\rhere", '"cr\rhere"'),
        (" lead", '" lead"'),
        ("trail ", '"trail "'),
        ("\ttab", '"\ttab"'),
        ([], "[]"),
        ({}, "{}"),
        (["a", "b,c", ""], '[a,"b,c",""]'),
        (("a", 1), "[a,1]"),
    ],
)
def test_dumps_golden(value: Any, expected: str) -> None:
    assert dumps(value) == expected


def test_quotes_are_doubled_only_inside_quoted_strings() -> None:
    assert dumps('say "hi"') == '"say ""hi"""'
    assert dumps('""') == '""""""'
    assert dumps("plain") == "plain"


def test_enums_by_name_or_string_value() -> None:
    assert dumps(Channel.Voice) == "Voice"
    assert dumps(Level.Low) == "Low"
    assert dumps(Direction.Incoming) == "Incoming"
    assert dumps(Direction.Outgoing) == "out going"
    assert dumps({"channel": Channel.Chat, Direction.Incoming: 1}) == "{channel:Chat,Incoming:1}"


def test_none_is_omitted() -> None:
    assert dumps({"a": None, "b": "x", "c": None}) == "{b:x}"
    assert dumps({"a": None}) == "{}"
    # ServiceStack writes a null list item as nothing and a null root as an empty body.
    assert dumps(["a", None, "b"]) == "[a,,b]"
    assert dumps(["a", None]) == "[a,]"
    assert dumps(None) == ""


def test_nested_dicts_and_lists_of_dicts() -> None:
    member = {
        "identity": "alice@example.com",
        "applicationData": {"crm": "42", "note": "a,b"},
        "muted": False,
        "role": None,
    }
    body = {"sessionId": "s1", "members": [member, {"identity": "+15551234567"}], "log": []}
    assert dumps(body) == (
        "{sessionId:s1,members:[{identity:alice@example.com,"
        'applicationData:{crm:42,note:"a,b"},muted:False},{identity:+15551234567}],log:[]}'
    )


def test_keys_follow_the_string_rule() -> None:
    assert dumps({"a:b": 1, "": 2, " k": 3}) == '{"a:b":1,"":2," k":3}'


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(TypeError):
        dumps(object())
    with pytest.raises(TypeError):
        dumps({None: "x"})


def test_float_specials() -> None:
    assert dumps([float("nan"), float("inf"), float("-inf"), -0.0]) == "[NaN,Infinity,-Infinity,-0]"


# --- loads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{a:1,b:True}", {"a": "1", "b": "True"}),
        ('{a:"x,y"}', {"a": "x,y"}),
        ('{a:"say ""hi"""}', {"a": 'say "hi"'}),
        ("{a:,b:1}", {"a": "", "b": "1"}),
        ("{a:}", {"a": ""}),
        ('{a:""}', {"a": ""}),
        ("{}", {}),
        ("[]", []),
        ("{ }", {}),
        ("[ \n ]", []),
        ('[""]', [""]),
        ("[a,,b]", ["a", "", "b"]),
        ("[a,]", ["a", ""]),
        ("{a:{b:[1,2]}}", {"a": {"b": ["1", "2"]}}),
        ("{a: hello world }", {"a": "hello world"}),
        ("{at:2026-11-28T04:10:00Z}", {"at": "2026-11-28T04:10:00Z"}),
        ('{"a:b":1}', {"a:b": "1"}),
        ("{a:1,a:2}", {"a": "2"}),
        ("plain", "plain"),
        ("", ""),
        ("  ", ""),
        ('" padded "', " padded "),
        ("None", "None"),
    ],
)
def test_loads(text: str, expected: Any) -> None:
    assert loads(text) == expected


def test_loads_keeps_insertion_order() -> None:
    assert list(loads("{z:1,a:2,m:3}")) == ["z", "a", "m"]


def test_loads_accepts_the_jsvformatter_display_form() -> None:
    # JsvFormatter.Format: CRLF, a tab per level, a space after the first ':' of each line.
    text = (
        "{\r\n\tsessionId: abc,\r\n\tmembers: \r\n\t[\r\n\t\t{\r\n\t\t\tidentity: alice,"
        '\r\n\t\t\tnote: "a, b"\r\n\t\t}\r\n\t],\r\n\tempty: []\r\n}'
    )
    assert loads(text) == {
        "sessionId": "abc",
        "members": [{"identity": "alice", "note": "a, b"}],
        "empty": [],
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{a:"x', "unterminated quoted string at position 3"),
        ('"abc', "unterminated quoted string at position 0"),
        ("{a}", "expected ':'"),
        ("{a", "expected ':'"),
        ("{a:1", "missing '}'"),
        ("[a,b", "missing ']'"),
        ("{a:1]", "expected ',' or '}'"),
        ("[a}", "expected ',' or ']'"),
        ('{a:"x"y}', "found 'y'"),
        ("{a:1}x", "trailing"),
        ("{a:1}}", "trailing"),
        ("a,b", "trailing"),
        ("]", "trailing"),
        ("{,}", "expected a key"),
        ("{", "expected a key"),
        ("{a:1,}", "expected a key"),
        ("{{a:1}:2}", "expected a key"),
    ],
)
def test_loads_rejects_malformed(text: str, fragment: str) -> None:
    with pytest.raises(JsvError, match="position") as info:
        loads(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nesting_limit() -> None:
    assert loads("[" * 32 + "]" * 32) is not None
    with pytest.raises(JsvError, match="nesting deeper than 32 levels at position 32"):
        loads("[" * 33 + "]" * 33)
    with pytest.raises(JsvError, match="nesting"):
        loads("{a:" * 100_000)
    deep: Any = "x"
    for _ in range(32):
        deep = [deep]
    assert loads(dumps(deep)) == deep
    with pytest.raises(JsvError, match="nesting"):
        dumps([deep])


def test_loads_refuses_non_text() -> None:
    with pytest.raises(TypeError):
        loads(b"{}")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["True", "true", "TRUE", "1", " True "])
def test_to_bool_true(text: str) -> None:
    assert to_bool(text) is True


@pytest.mark.parametrize("text", ["False", "false", "fAlSe", "0"])
def test_to_bool_false(text: str) -> None:
    assert to_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "2", "None", "truee"])
def test_to_bool_rejects(text: str) -> None:
    with pytest.raises(JsvError):
        to_bool(text)


# --- the seed's sample request and response --------------------------------------------------

RESPONSE_KEYS = [
    "dialState", "callState", "queueState", "accountId", "accountName", "customerId",
    "customerBreadcrumb", "customerName", "endpointId", "endpointName", "dateCompleted",
    "destination", "toAddress", "fromAddress", "fromName", "answeredByName", "queueMemberId",
    "channel", "ended", "outcome", "callSid", "consoleData", "holdQueueName", "heldByUserId",
    "holdReason", "conferenceSid", "displayName", "log", "members", "callbackNumber",
    "answeredById", "direction", "fromPhoneNumber", "mostRecentParticipantCallSid", "wasMissed",
    "ringQueueId", "id", "dateCreated", "dateLastModified", "createdBy", "lastModifiedBy",
]  # fmt: skip


def test_seed_request() -> None:
    sample = (DATA / "seed_request.jsv").read_text()
    parsed = loads(sample)
    assert parsed == {"sessionId": "String", "memberToAdd": "String", "callerId": "String"}
    assert dumps(parsed) == "{sessionId:String,memberToAdd:String,callerId:String}"


def test_seed_response() -> None:
    sample = (DATA / "seed_response.jsv").read_text()
    parsed = loads(sample)
    assert list(parsed) == RESPONSE_KEYS
    assert parsed["dialState"] == "None"
    assert parsed["callState"] == "Disconnected"
    assert parsed["channel"] == "Voice"
    assert parsed["direction"] == "Incoming"
    assert parsed["ended"] == "False"
    assert to_bool(parsed["wasMissed"]) is False
    assert parsed["customerBreadcrumb"] == [{"id": "String", "name": "String"}]
    assert parsed["log"] == [{"date": "String", "message": "String"}]
    [member] = parsed["members"]
    assert member["applicationData"] == {"String": "String"}
    assert member["isOriginalMember"] == "False"
    assert list(member) == [
        "identity", "endpointId", "displayName", "isOriginalMember", "avatarUrl",
        "applicationData", "callState", "role", "callSid", "muted",
    ]  # fmt: skip
    compact = dumps(parsed)
    assert compact.startswith("{dialState:None,callState:Disconnected,queueState:None,")
    assert "customerBreadcrumb:[{id:String,name:String}],customerName:String," in compact
    assert "applicationData:{String:String},callState:None," in compact
    assert compact.endswith(",createdBy:String,lastModifiedBy:String}")
    assert not any(c.isspace() for c in compact)
    assert loads(compact) == parsed


# --- properties -------------------------------------------------------------------------------


@settings(deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    assert loads(dumps(value)) == value


@settings(deadline=None)
@given(texts)
def test_strings_round_trip_inside_containers(text: str) -> None:
    assert loads(dumps({text: [text, {"k": text}]})) == {text: [text, {"k": text}]}


@settings(deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(_SPECIAL, st.text(max_size=2))).map("".join)))
def test_loads_arbitrary_text_raises_only_jsv_error(text: str) -> None:
    with contextlib.suppress(JsvError):
        loads(text)


@settings(deadline=None)
@given(values, st.integers(min_value=0), st.one_of(_SPECIAL, st.just("")), st.booleans())
def test_loads_damaged_jsv_raises_only_jsv_error(
    value: Any, cut: int, insert: str, truncate: bool
) -> None:
    text = dumps(value)
    cut %= len(text) + 1
    damaged = text[:cut] if truncate else text[:cut] + insert + text[cut:]
    with contextlib.suppress(JsvError):
        loads(damaged)


@settings(deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_positional_and_exact(value: float) -> None:
    text = dumps(value)
    assert "e" not in text.lower()
    assert float(text) == value
