"""SessionView.to_json joins precomputed bytes; it must write exactly what a JSON encoder
would write for the same SessionInfo, whatever the stored text holds."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.dto import SESSION_INFO, SessionView

SCALARS = [f for f in SESSION_INFO if f.name not in ("members", "log")]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def stored_value(field):
    if field.type == "bool":
        return st.sampled_from(["true", "false"])
    if isinstance(field.type, str) and field.type.startswith(("list:", "dict:")):
        return json_values.map(compact)
    if isinstance(field.type, type):
        return st.sampled_from([e.value for e in field.type])
    return text


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


sessions = st.fixed_dictionaries({}, optional={f.name: stored_value(f) for f in SCALARS})
member = st.fixed_dictionaries({"identity": text, "muted": st.booleans()})


def expected(raw: dict[str, str], members: list[dict], log: list[dict]) -> dict:
    out = {}
    for f in SESSION_INFO:
        value = raw.get(f.name)
        if f.name == "members":
            out[f.name] = members
        elif f.name == "log":
            out[f.name] = log
        elif value is None:
            out[f.name] = f.default
        elif f.type == "bool":
            out[f.name] = value == "true"
        elif isinstance(f.type, str) and f.type.startswith(("list:", "dict:")):
            out[f.name] = json.loads(value)
        else:
            out[f.name] = value
    return out


@given(sessions, st.lists(member, max_size=4), st.lists(st.fixed_dictionaries({"message": text})))
def test_to_json_is_the_json_of_the_session(raw, members, log):
    view = SessionView(
        raw, [compact(m).encode() for m in members], [compact(x).encode() for x in log]
    )
    assert view.to_json() == compact(expected(raw, members, log)).encode()
