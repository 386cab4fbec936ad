"""The webhook's own HMAC must agree with twilio's RequestValidator on every input: it is
the fast path, and a disagreement would turn away callbacks Twilio really signed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from webhooks.signature import sha1_signature, valid

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.sampled_from(["CallSid", "CallStatus", "To", "From", "Called", "a", "A", "_"]) | text


@given(
    token=st.text(min_size=1, max_size=40).filter(lambda t: t.isascii()),
    url=st.sampled_from(["https://x.example", "http://127.0.0.1:8000"]).map(
        lambda base: base + "/twilio/call-status?session=s&member=m"
    ),
    pairs=st.lists(st.tuples(names, text), max_size=12),
)
def test_same_signature_as_request_validator(token, url, pairs):
    expected = RequestValidator(token).compute_signature(url, FormData(pairs))
    assert sha1_signature(token.encode(), url, pairs) == expected


def test_a_signature_that_is_not_base64_text_is_refused_not_an_error():
    pairs = [("CallSid", "CA1")]
    url = "https://x.example/t"
    assert not valid(RequestValidator("token"), url, pairs, FormData(pairs), "é" * 28)


def test_a_changed_value_changes_the_signature():
    pairs = [("CallSid", "CA1"), ("CallStatus", "ringing")]
    signed = sha1_signature(b"token", "https://x.example/t", pairs)
    assert signed != sha1_signature(
        b"token", "https://x.example/t", [pairs[0], ("CallStatus", "busy")]
    )
    assert signed != sha1_signature(b"other", "https://x.example/t", pairs)
