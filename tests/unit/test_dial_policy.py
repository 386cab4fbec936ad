"""Where dials may go, as the policy decides it: no process, no Redis."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import dial_policy
from orchestrator.api import metadata
from orchestrator.api.binding import trim
from orchestrator.phone import normalise
from orchestrator.settings import ConfigError, Settings

US_NUMBER = "+14155550100"
CA_NUMBER = "+16135550123"
GB_NUMBER = "+442079460018"
US_PREMIUM = "+19002345678"
GB_PREMIUM = "+449098790000"
NON_GEOGRAPHIC = "+882161234567"

REQUIRED = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "PUBLIC_BASE_URL": "https://orchestrator.example.com",
}


def test_a_number_of_an_allowed_country_may_be_dialled() -> None:
    assert dial_policy.refusal(US_NUMBER, ["US"]) is None
    assert dial_policy.refusal(CA_NUMBER, ["US", "CA"]) is None


def test_a_number_of_another_country_is_refused_saying_where_it_is_and_what_may_be_dialled() -> (
    None
):
    assert dial_policy.refusal(GB_NUMBER, ["US", "CA"]) == (
        "+44 20 7946 0018 is in GB; this account may dial US, CA"
    )
    # +1 is not one country: Canada's numbers are not the United States'.
    assert dial_policy.refusal(CA_NUMBER, ["US"]) == (
        "+1 613-555-0123 is in CA; this account may dial US"
    )


def test_a_non_geographic_number_is_in_no_list() -> None:
    reason = dial_policy.refusal(NON_GEOGRAPHIC, ["US", "GB"])
    assert reason is not None and "belongs to no country" in reason


@pytest.mark.parametrize(("number", "country"), [(US_PREMIUM, "US"), (GB_PREMIUM, "GB")])
def test_a_premium_rate_number_is_refused_in_an_allowed_country(number: str, country: str) -> None:
    reason = dial_policy.refusal(number, [country])
    assert reason is not None
    assert reason.endswith("is a premium-rate number; premium-rate numbers are never dialled")


def test_a_shared_cost_number_is_refused_in_an_allowed_country() -> None:
    example = phonenumbers.example_number_for_type("FR", phonenumbers.PhoneNumberType.SHARED_COST)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    reason = dial_policy.refusal(e164, ["FR"])
    assert reason is not None and "shared-cost numbers are never dialled" in reason


@pytest.mark.parametrize("user", ["client:usr_0123", "usr_0123", "ada@example.com"])
def test_a_user_is_no_number_so_countries_do_not_apply(user: str) -> None:
    assert not dial_policy.is_number(user)
    assert dial_policy.refusal(user, []) is None


def test_an_account_that_may_dial_no_country_dials_no_number() -> None:
    assert dial_policy.refusal(US_NUMBER, []) == (
        "+1 415-555-0100 is in US; this account may dial no country"
    )


def test_country_codes_are_read_in_any_case_once_each_in_order() -> None:
    assert dial_policy.parse_countries(" us, Ca ,US,gb") == ("US", "CA", "GB")


@pytest.mark.parametrize("text", ["UK", "US,XX", "USA", "001", "", " , "])
def test_an_unknown_or_empty_country_list_is_refused_naming_the_code(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        dial_policy.parse_countries(text)
    for code in [c.strip() for c in text.split(",") if c.strip() and c.strip() != "US"]:
        assert repr(code) in str(refused.value)


def test_dial_countries_default_to_the_country_of_phone_default_region() -> None:
    assert Settings.from_env(REQUIRED).dial_countries == ("US",)
    gb = Settings.from_env({**REQUIRED, "PHONE_DEFAULT_REGION": "gb"})
    assert gb.dial_countries == ("GB",)


def test_dial_countries_are_kept_upper_case() -> None:
    settings = Settings.from_env({**REQUIRED, "DIAL_COUNTRIES": "us,ca"})
    assert settings.dial_countries == ("US", "CA")


def test_malformed_dial_countries_are_named_with_every_other_problem() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**REQUIRED, "DIAL_COUNTRIES": "US,UK", "TWILIO_CPS": "0"})
    assert refused.value.problems == [
        "DIAL_COUNTRIES: 'UK': not a country code (ISO 3166 alpha-2, e.g. US, GB)",
        "TWILIO_CPS must be a number greater than 0",
    ]


def test_a_malformed_default_region_is_named_once() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**REQUIRED, "PHONE_DEFAULT_REGION": "XX"})
    assert refused.value.problems == ["PHONE_DEFAULT_REGION must be a country code, e.g. US or GB"]


def test_a_hand_edited_account_list_keeps_only_the_codes_that_read() -> None:
    assert dial_policy._stored(b"us,UK,CA") == ("US", "CA")
    assert dial_policy._stored("UK") == ()  # nothing that reads: no number, never every one
    assert dial_policy._stored(None) is None  # no list of its own: the setting


# The API document's pattern for the fields that name whom to dial (memberToAdd,
# destination) admits only what a default account may dial: a client generated from it
# sends no number the policy refuses (docs/api.md#where-dials-may-go).
MEMBER_PATTERN = metadata.openapi(None, "US")["components"]["schemas"]["InviteChatMember"][
    "properties"
]["memberToAdd"]["pattern"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(MEMBER_PATTERN))
def test_every_number_the_document_allows_to_dial_is_one_the_policy_lets_through(
    text: str,
) -> None:
    value = trim(text)
    if "@" in value or value.startswith("usr_"):
        return
    assert dial_policy.refusal(normalise(value, "US"), ("US",)) is None


@pytest.mark.parametrize("number", [US_PREMIUM, "9002345678", GB_NUMBER])
def test_the_document_rules_out_numbers_never_dialled(number: str) -> None:
    assert re.search(MEMBER_PATTERN, number) is None
