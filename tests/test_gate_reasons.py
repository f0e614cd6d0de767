"""One table per reason code of the gate contract (DESIGN.md, "The gate contract").

Every case starts from BASE, a scenario the gate allows: a person dials a live telemarketing call
by hand to a New York landline at noon on a Wednesday, with fresh registry data and nothing on
any list. Each row changes only what its rule is about.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import decision_to_dict, parse_scenario

AT = "2026-07-15T16:00:00Z"            # Wednesday 12:00 EDT, 11:00 CDT, 10:00 MDT
BASE: dict[str, Any] = {
    "at": AT,
    "channel": "voice",
    "purpose": "telemarketing",
    "voice": "live",
    "automated": False,
    "contact": {"phone": "+12125550123", "state": "NY", "zip": "10001", "line_type": "landline"},
    "consents": [],
    "revocations": [],
    "dnc": {"national": {"listed": False, "registered_on": None, "synced_at": "2026-07-10T00:00:00Z"},
            "state": [], "internal": False, "litigator": False},
    "ebr": {"last_transaction_at": None, "last_inquiry_at": None},
    "history": [],
}
FLORIDA = {"phone": "+13055550123", "state": None, "zip": None}       # 305: Miami, Eastern
OKLAHOMA = {"phone": "+14055550123", "state": None, "zip": None}      # 405: Oklahoma City, Central
MARYLAND = {"phone": "+14105550123", "state": None, "zip": None}      # 410: Baltimore, Eastern
UTAH = {"phone": "+18015550123", "state": None, "zip": None}          # 801: Salt Lake City, Mountain


def scenario(**overrides: Any) -> dict[str, Any]:
    """BASE with overrides; a dict value for `contact`, `dnc` or `ebr` is merged into BASE's."""
    result = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if key in ("contact", "dnc", "ebr") and isinstance(value, dict):
            result[key].update(copy.deepcopy(value))
        else:
            result[key] = copy.deepcopy(value)
    return result


def decide(**overrides: Any) -> dict[str, Any]:
    request, facts, at = parse_scenario(scenario(**overrides))
    return decision_to_dict(evaluate(request, facts, load_pack(), at))


def consent(kind: str, channels=("voice",), purposes=("telemarketing",),
            granted_at="2026-01-01T00:00:00Z", expires_at=None) -> dict[str, Any]:
    return {"kind": kind, "channels": list(channels), "purposes": list(purposes),
            "granted_at": granted_at, "expires_at": expires_at, "evidence": "web form, IP 203.0.113.7"}


def written(**kwargs) -> dict[str, Any]:
    return consent("written", **kwargs)


def express(**kwargs) -> dict[str, Any]:
    return consent("express", **kwargs)


def codes(decision: dict[str, Any]) -> set[str]:
    return {reason["code"] for reason in decision["reasons"]}


def rules(decision: dict[str, Any]) -> set[str]:
    return {reason["rule"] for reason in decision["reasons"]}


def assert_decision(decision, verdict, expected_codes, next_allowed_at=None):
    assert decision["verdict"] == verdict, decision
    assert codes(decision) == set(expected_codes), decision
    if verdict == "defer":
        assert decision["next_allowed_at"] == next_allowed_at, decision
    else:
        assert decision["next_allowed_at"] is None, decision


def test_base_scenario_is_allowed():
    assert_decision(decide(), "allow", [])


# --- invalid_number -----------------------------------------------------------------------------

@pytest.mark.parametrize("phone", [
    "12345",                 # too short for any plan
    "+44 20 7946 0000",      # a valid UK number, but not NANP
    "hello",                 # not a number at all
    "+1 212 555 012",        # NANP prefix, one digit short
    "+16845550123",          # American Samoa prefix the metadata does not recognise
    "",
])
def test_invalid_number_blocks(phone):
    decision = decide(contact={"phone": phone})
    assert_decision(decision, "block", ["invalid_number"])
    assert decision["timezones"] == [] and decision["states"] == []


# --- location_unknown ---------------------------------------------------------------------------

@pytest.mark.parametrize("contact,verdict,expected", [
    ({"phone": "+18005550123", "state": None, "zip": None}, "block", ["location_unknown"]),  # toll-free
    ({"phone": "+18885550123", "state": None, "zip": None}, "block", ["location_unknown"]),  # toll-free
    ({"phone": "+15005550123", "state": None, "zip": None}, "block", ["location_unknown"]),  # personal (5XX)
    ({"phone": "+18005550123", "state": "NY", "zip": None}, "allow", []),    # the state places it
    ({"phone": "+18005550123", "state": None, "zip": "10001"}, "allow", []),  # the ZIP places it
])
def test_location_unknown(contact, verdict, expected):
    assert_decision(decide(contact=contact), verdict, expected)


def test_location_unknown_blocks_informational_too():
    decision = decide(purpose="informational", contact={"phone": "+18005550123", "state": None, "zip": None})
    assert_decision(decision, "block", ["location_unknown"])


# --- dnc_internal and dnc_litigator -------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {},
    {"purpose": "informational"},
    {"consents": [written(purposes=("telemarketing", "informational"))]},
    {"purpose": "informational", "consents": [written(purposes=("informational",))]},
    {"channel": "sms", "consents": [written(channels=("sms",))]},
])
def test_internal_list_blocks_every_purpose_whatever_the_consent(overrides):
    decision = decide(dnc={"internal": True}, **overrides)
    assert_decision(decision, "block", ["dnc_internal"])


@pytest.mark.parametrize("overrides", [
    {},
    {"purpose": "informational"},
    {"consents": [written()]},
])
def test_litigator_list_blocks(overrides):
    assert_decision(decide(dnc={"litigator": True}, **overrides), "block", ["dnc_litigator"])


def test_internal_and_litigator_are_both_listed():
    decision = decide(dnc={"internal": True, "litigator": True})
    assert_decision(decision, "block", ["dnc_internal", "dnc_litigator"])


# --- dnc_data_stale -----------------------------------------------------------------------------

@pytest.mark.parametrize("national,purpose,verdict,expected", [
    (None, "telemarketing", "block", ["dnc_data_stale"]),                       # no registry data at all
    ({"listed": False, "synced_at": None}, "telemarketing", "block", ["dnc_data_stale"]),
    ({"listed": False, "synced_at": "2026-06-13T16:00:00Z"}, "telemarketing", "block", ["dnc_data_stale"]),  # 32 days
    ({"listed": False, "synced_at": "2026-06-14T15:59:59Z"}, "telemarketing", "block", ["dnc_data_stale"]),  # 31 days + 1 s
    ({"listed": False, "synced_at": "2026-06-14T16:00:00Z"}, "telemarketing", "allow", []),  # exactly 31 days is fine
    ({"listed": False, "synced_at": "2026-07-15T15:00:00Z"}, "telemarketing", "allow", []),
    (None, "informational", "allow", []),                                       # purpose not affected
    ({"listed": False, "synced_at": "2025-01-01T00:00:00Z"}, "informational", "allow", []),
])
def test_dnc_data_stale(national, purpose, verdict, expected):
    decision = decide(purpose=purpose, dnc={"national": national})
    assert_decision(decision, verdict, expected)


# --- dnc_national -------------------------------------------------------------------------------

LISTED = {"national": {"listed": True, "registered_on": "2019-03-01", "synced_at": "2026-07-10T00:00:00Z"}}


@pytest.mark.parametrize("overrides,verdict,expected", [
    ({}, "block", ["dnc_national"]),
    ({"consents": [written()]}, "allow", []),                                     # written consent covers it
    ({"consents": [express()]}, "block", ["dnc_national"]),                       # express does not exempt
    ({"consents": [written(channels=("sms",))]}, "block", ["dnc_national"]),      # another channel
    ({"consents": [written(purposes=("informational",))]}, "block", ["dnc_national"]),  # another purpose
    ({"consents": [written(expires_at="2026-07-01T00:00:00Z")]}, "block", ["dnc_national"]),  # expired
    ({"ebr": {"last_transaction_at": "2025-02-15T16:00:00Z"}}, "allow", []),      # transaction 17 months ago
    ({"ebr": {"last_transaction_at": "2024-12-15T16:00:00Z"}}, "block", ["dnc_national"]),  # 19 months ago
    ({"ebr": {"last_inquiry_at": "2026-05-15T16:00:00Z"}}, "allow", []),          # inquiry 2 months ago
    ({"ebr": {"last_inquiry_at": "2026-03-15T16:00:00Z"}}, "block", ["dnc_national"]),  # 4 months ago
    ({"ebr": {"last_transaction_at": "2026-08-01T00:00:00Z"}}, "block", ["dnc_national"]),  # after `at`: not yet
    ({"purpose": "informational"}, "allow", []),                                  # DNC is for telemarketing
])
def test_dnc_national(overrides, verdict, expected):
    assert_decision(decide(dnc=LISTED, **overrides), verdict, expected)


# --- dnc_state ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,verdict,expected", [
    ({}, "block", ["dnc_state"]),
    ({"consents": [written()]}, "allow", []),
    ({"consents": [express()]}, "block", ["dnc_state"]),
    ({"ebr": {"last_transaction_at": "2026-05-01T00:00:00Z"}}, "block", ["dnc_state"]),  # EBR is federal only
    ({"purpose": "informational"}, "allow", []),
])
def test_dnc_state(overrides, verdict, expected):
    decision = decide(contact=FLORIDA, dnc={"state": ["FL"]}, **overrides)
    assert_decision(decision, verdict, expected)
    if expected:
        assert rules(decision) == {"state.FL.dnc"}


# --- consent_revoked ----------------------------------------------------------------------------

SMS_TELEMARKETING = {"channel": "sms", "voice": None}


STOP_JUL10 = {"at": "2026-07-10T12:00:00Z", "channels": ["sms"], "via": "sms_stop"}
VOICE_OPT_OUT_JUL10 = {"at": "2026-07-10T12:00:00Z", "channels": ["voice"], "via": "spoken"}
REVOKED = ["consent_revoked", "consent_missing"]     # the opt-out holds, and the old consent no longer counts


@pytest.mark.parametrize("overrides,verdict,expected", [
    # Written consent to texts, revoked by STOP: the text is blocked, and the consent granted before
    # the STOP no longer counts as the written consent the text needs.
    ({"consents": [written(channels=("voice", "sms"))], "revocations": [STOP_JUL10],
      **SMS_TELEMARKETING}, "block", REVOKED),
    # A newer grant after the revocation counts again.
    ({"consents": [written(channels=("sms",)), written(channels=("sms",), granted_at="2026-07-12T00:00:00Z")],
      "revocations": [STOP_JUL10], **SMS_TELEMARKETING}, "allow", []),
    # A revocation after `at` has not happened yet.
    ({"consents": [written(channels=("sms",))],
      "revocations": [{"at": "2026-07-20T12:00:00Z", "channels": ["sms"], "via": "sms_stop"}],
      **SMS_TELEMARKETING}, "allow", []),
    # A revocation on SMS does not touch voice consent.
    ({"voice": "artificial", "consents": [written(channels=("voice", "sms"))],
      "revocations": [STOP_JUL10]}, "allow", []),
    # A revocation naming voice blocks the call.
    ({"voice": "artificial", "consents": [written(channels=("voice", "sms"))],
      "revocations": [{"at": "2026-07-10T12:00:00Z", "channels": ["voice", "sms"], "via": "keypress"}]},
     "block", REVOKED),
    # Revoked informational texts (express need).
    ({"purpose": "informational", "consents": [express(channels=("sms",), purposes=("informational",))],
      "revocations": [STOP_JUL10], **SMS_TELEMARKETING}, "block", REVOKED),
])
def test_consent_revoked(overrides, verdict, expected):
    assert_decision(decide(**overrides), verdict, expected)


# An opt-out is also a do-not-call request (47 CFR 64.1200(d)): it stops every attempt on its
# channel, including those that need no consent at all. BASE is a live call a person dials by hand
# to a landline, which needs none.
@pytest.mark.parametrize("overrides,verdict,expected", [
    # Hand-dialed live telemarketing call, after "stop calling me".
    ({"revocations": [VOICE_OPT_OUT_JUL10]}, "block", ["consent_revoked"]),
    # Automated live telemarketing call to a (New York) landline.
    ({"automated": True, "revocations": [VOICE_OPT_OUT_JUL10]}, "block", ["consent_revoked"]),
    # Informational live call, by hand and automated.
    ({"purpose": "informational", "revocations": [VOICE_OPT_OUT_JUL10]}, "block", ["consent_revoked"]),
    ({"purpose": "informational", "automated": True, "revocations": [VOICE_OPT_OUT_JUL10]},
     "block", ["consent_revoked"]),
    # The opt-out at the very instant of the attempt already holds.
    ({"revocations": [{**VOICE_OPT_OUT_JUL10, "at": AT}]}, "block", ["consent_revoked"]),
    # A texted STOP stops texts only; a call that needs no consent goes on.
    ({"revocations": [STOP_JUL10]}, "allow", []),
    # An opt-out after `at` has not happened yet.
    ({"revocations": [{**VOICE_OPT_OUT_JUL10, "at": "2026-07-20T00:00:00Z"}]}, "allow", []),
    # A consent for voice telemarketing granted after the opt-out lifts it (this call needs no consent).
    ({"revocations": [VOICE_OPT_OUT_JUL10], "consents": [express(granted_at="2026-07-12T00:00:00Z")]},
     "allow", []),
    # ... but not one granted after `at`, nor one for another purpose or channel.
    ({"revocations": [VOICE_OPT_OUT_JUL10], "consents": [express(granted_at="2026-07-16T00:00:00Z")]},
     "block", ["consent_revoked"]),
    ({"revocations": [VOICE_OPT_OUT_JUL10],
      "consents": [express(purposes=("informational",), granted_at="2026-07-12T00:00:00Z")]},
     "block", ["consent_revoked"]),
    ({"revocations": [VOICE_OPT_OUT_JUL10],
      "consents": [express(channels=("sms",), granted_at="2026-07-12T00:00:00Z")]},
     "block", ["consent_revoked"]),
    # The latest opt-out counts: a grant between two opt-outs does not lift the second.
    ({"revocations": [VOICE_OPT_OUT_JUL10, {**VOICE_OPT_OUT_JUL10, "at": "2026-07-14T00:00:00Z"}],
      "consents": [express(granted_at="2026-07-12T00:00:00Z")]}, "block", ["consent_revoked"]),
])
def test_an_opt_out_stops_every_attempt_on_its_channel(overrides, verdict, expected):
    decision = decide(**overrides)
    assert_decision(decision, verdict, expected)
    if "consent_revoked" in expected:
        [reason] = [r for r in decision["reasons"] if r["code"] == "consent_revoked"]
        assert reason["rule"] == "consent.revocation" and "do-not-call request" in reason["detail"]


@pytest.mark.parametrize("granted_at,verdict,expected", [
    ("2026-07-01T00:00:00Z", "block", REVOKED),      # granted before the opt-out: no longer counts
    ("2026-07-10T12:00:00Z", "block", REVOKED),      # granted at the very instant of the opt-out: same
    ("2026-07-10T12:00:01Z", "allow", []),           # granted after it: re-enables
])
def test_a_consent_granted_at_or_before_a_later_opt_out_does_not_count(granted_at, verdict, expected):
    # An automated artificial-voice call needs written consent.
    decision = decide(voice="artificial", automated=True, consents=[written(granted_at=granted_at)],
                      revocations=[VOICE_OPT_OUT_JUL10])
    assert_decision(decision, verdict, expected)
    if expected:
        [missing] = [r for r in decision["reasons"] if r["code"] == "consent_missing"]
        assert "after the voice opt-out at 2026-07-10T12:00:00Z" in missing["detail"]


def test_a_grant_of_the_wrong_kind_after_the_opt_out_lifts_it_but_is_not_enough():
    # Express consent given after the opt-out: the opt-out no longer holds, yet the prerecorded
    # telemarketing call still needs written consent.
    decision = decide(voice="prerecorded", revocations=[VOICE_OPT_OUT_JUL10],
                      consents=[written(granted_at="2026-01-01T00:00:00Z"), express(granted_at="2026-07-12T00:00:00Z")])
    assert_decision(decision, "block", ["consent_missing"])


def test_a_written_consent_before_the_opt_out_does_not_lift_the_national_dnc_block():
    decision = decide(dnc=LISTED, consents=[written()], revocations=[VOICE_OPT_OUT_JUL10])
    assert_decision(decision, "block", ["dnc_national", "consent_revoked"])


# --- consent_missing: the "Consent needed" table ------------------------------------------------

# (id, overrides, consent needed). Every row's `at` is inside every window, so only consent decides.
CONSENT_NEEDED = [
    # written
    ("tm prerecorded, manual, landline", {"voice": "prerecorded"}, "written"),
    ("tm artificial, manual, landline", {"voice": "artificial"}, "written"),
    ("tm artificial, automated, mobile", {"voice": "artificial", "automated": True,
                                          "contact": {"line_type": "mobile"}}, "written"),
    ("tm text, automated", {"channel": "sms", "voice": None, "automated": True}, "written"),
    ("tm text, by hand", {"channel": "sms", "voice": None, "automated": False}, "written"),
    ("tm live, automated, mobile", {"automated": True, "contact": {"line_type": "mobile"}}, "written"),
    ("tm live, automated, unknown line", {"automated": True, "contact": {"line_type": "unknown"}}, "written"),
    ("tm live, automated, FL landline", {"automated": True, "contact": {**FLORIDA, "line_type": "landline"}}, "written"),
    ("tm live, automated, OK landline", {"automated": True, "contact": {**OKLAHOMA, "line_type": "landline"}}, "written"),
    ("tm live, automated, MD landline", {"automated": True, "contact": {**MARYLAND, "line_type": "landline"}}, "written"),
    ("tm live, automated, NY number, FL address",
     {"automated": True, "contact": {"state": "FL", "zip": "33101", "line_type": "landline"}}, "written"),
    ("tm live, automated, FL voip", {"automated": True, "contact": {**FLORIDA, "line_type": "voip"}}, "written"),
    # express (or written)
    ("info prerecorded, manual, landline", {"purpose": "informational", "voice": "prerecorded"}, "express"),
    ("info artificial, manual, landline", {"purpose": "informational", "voice": "artificial"}, "express"),
    ("info live, automated, mobile", {"purpose": "informational", "automated": True,
                                      "contact": {"line_type": "mobile"}}, "express"),
    ("info live, automated, unknown line", {"purpose": "informational", "automated": True,
                                            "contact": {"line_type": "unknown"}}, "express"),
    ("info text", {"purpose": "informational", "channel": "sms", "voice": None}, "express"),
    # none
    ("tm live, manual, landline", {}, "none"),
    ("tm live, manual, mobile", {"contact": {"line_type": "mobile"}}, "none"),
    ("tm live, manual, unknown line", {"contact": {"line_type": "unknown"}}, "none"),
    ("tm live, manual, FL landline", {"contact": {**FLORIDA, "line_type": "landline"}}, "none"),
    ("tm live, manual, FL mobile", {"contact": {**FLORIDA, "line_type": "mobile"}}, "none"),
    ("tm live, automated, landline", {"automated": True}, "none"),
    # VoIP is neither mobile nor unknown in the table: an automated live call to it needs no consent.
    ("tm live, automated, voip", {"automated": True, "contact": {"line_type": "voip"}}, "none"),
    ("info live, manual, mobile", {"purpose": "informational", "contact": {"line_type": "mobile"}}, "none"),
    ("info live, automated, landline", {"purpose": "informational", "automated": True}, "none"),
    # The mini-TCPA rule is about telemarketing only.
    ("info live, automated, FL landline", {"purpose": "informational", "automated": True,
                                           "contact": {**FLORIDA, "line_type": "landline"}}, "none"),
]
ALLOWED_BY = {"written": {"written"}, "express": {"written", "express"}, "none": {"written", "express", None}}


def _matching_consent(kind: str, overrides: dict[str, Any]) -> dict[str, Any]:
    channel = overrides.get("channel", "voice")
    purpose = overrides.get("purpose", "telemarketing")
    return consent(kind, channels=(channel,), purposes=(purpose,))


@pytest.mark.parametrize("held", [None, "express", "written"])
@pytest.mark.parametrize("overrides,needed", [pytest.param(o, n, id=i) for i, o, n in CONSENT_NEEDED])
def test_consent_needed_table(overrides, needed, held):
    consents = [] if held is None else [_matching_consent(held, overrides)]
    decision = decide(consents=consents, **overrides)
    if held in ALLOWED_BY[needed]:
        assert_decision(decision, "allow", [])
    else:
        assert_decision(decision, "block", ["consent_missing"])
        assert rules(decision) == {f"consent.{needed}"}


ARTIFICIAL_TM = {"voice": "artificial"}       # needs written consent covering voice telemarketing


@pytest.mark.parametrize("consents,verdict,expected", [
    pytest.param([written()], "allow", [], id="written, covering"),
    pytest.param([written(expires_at="2026-07-15T15:59:59Z")], "block", ["consent_missing"], id="expired"),
    pytest.param([written(expires_at=AT)], "block", ["consent_missing"], id="expires exactly at `at`"),
    pytest.param([written(expires_at="2026-07-15T16:00:01Z")], "allow", [], id="expires just after `at`"),
    pytest.param([written(granted_at="2026-07-15T16:00:01Z")], "block", ["consent_missing"], id="granted after `at`"),
    pytest.param([written(granted_at=AT)], "allow", [], id="granted exactly at `at`"),
    pytest.param([written(channels=("sms",))], "block", ["consent_missing"], id="wrong channel"),
    pytest.param([written(purposes=("informational",))], "block", ["consent_missing"], id="wrong purpose"),
    pytest.param([express()], "block", ["consent_missing"], id="express does not satisfy written"),
    pytest.param([express(), written(channels=("sms",))], "block", ["consent_missing"], id="neither grant is enough"),
])
def test_consent_missing_details(consents, verdict, expected):
    assert_decision(decide(consents=consents, **ARTIFICIAL_TM), verdict, expected)


@pytest.mark.parametrize("consents,verdict", [
    ([written(purposes=("informational",))], "allow"),             # written satisfies an express need
    ([express(purposes=("informational",))], "allow"),
    ([express(purposes=("telemarketing",))], "block"),             # wrong purpose
    ([express(purposes=("informational",), expires_at="2026-07-01T00:00:00Z")], "block"),
])
def test_informational_prerecorded_needs_express(consents, verdict):
    decision = decide(purpose="informational", voice="prerecorded", consents=consents)
    assert decision["verdict"] == verdict
    assert codes(decision) == (set() if verdict == "allow" else {"consent_missing"})


# --- calling_window -----------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,verdict,expected_rules,next_at", [
    ({}, "2026-07-15T11:59:00Z", "defer", {"federal.hours"}, "2026-07-15T12:00:00Z"),     # 07:59 EDT
    ({}, "2026-07-15T12:00:00Z", "allow", set(), None),                                  # 08:00 EDT
    ({}, "2026-07-16T00:59:00Z", "allow", set(), None),                                  # 20:59 EDT
    ({}, "2026-07-16T01:00:00Z", "defer", {"federal.hours"}, "2026-07-16T12:00:00Z"),     # 21:00 EDT
    (FLORIDA, "2026-07-15T23:59:00Z", "allow", set(), None),                             # 19:59 EDT
    (FLORIDA, "2026-07-16T00:30:00Z", "defer", {"state.FL.hours"}, "2026-07-16T12:00:00Z"),  # FL closes at 20:00
    (FLORIDA, "2026-07-16T01:30:00Z", "defer", {"state.FL.hours", "federal.hours"}, "2026-07-16T12:00:00Z"),
    (UTAH, "2026-07-19T18:00:00Z", "defer", {"state.UT.hours"}, "2026-07-20T14:00:00Z"),  # UT: Sunday closed
])
def test_calling_window(contact, at, verdict, expected_rules, next_at):
    decision = decide(contact=contact, at=at)
    assert_decision(decision, verdict, ["calling_window"] if expected_rules else [], next_at)
    assert rules(decision) == expected_rules


def test_window_applies_whatever_the_purpose_or_consent():
    decision = decide(at="2026-07-16T01:30:00Z", purpose="informational",
                      consents=[written(purposes=("informational", "telemarketing"))])
    assert_decision(decision, "defer", ["calling_window"], "2026-07-16T12:00:00Z")


def test_block_wins_over_defer_and_every_reason_is_listed():
    decision = decide(at="2026-07-16T01:30:00Z", voice="artificial", contact=FLORIDA)
    assert_decision(decision, "block", ["consent_missing", "calling_window"])
    assert rules(decision) == {"consent.written", "state.FL.hours", "federal.hours"}


# --- holiday ------------------------------------------------------------------------------------

@pytest.mark.parametrize("contact,at,verdict,expected_rules,next_at", [
    (UTAH, "2026-07-24T18:00:00Z", "defer", {"state.UT.holidays"}, "2026-07-25T14:00:00Z"),   # Pioneer Day (Fri)
    (UTAH, "2026-07-23T18:00:00Z", "allow", set(), None),                                     # the day before
    ({"phone": "+12155550123", "state": None, "zip": None},
     "2026-04-03T16:00:00Z", "defer", {"state.PA.holidays"}, "2026-04-04T12:00:00Z"),         # PA Good Friday
    ({}, "2026-04-03T16:00:00Z", "allow", set(), None),                                       # NY has no ban
])
def test_holiday(contact, at, verdict, expected_rules, next_at):
    decision = decide(contact=contact, at=at)
    assert_decision(decision, verdict, ["holiday"] if expected_rules else [], next_at)
    assert rules(decision) == expected_rules


# --- frequency_cap ------------------------------------------------------------------------------

def attempts(*instants_and_channels):
    return [{"at": at, "channel": channel} for at, channel in instants_and_channels]


THREE_TODAY = attempts(("2026-07-14T17:00:00Z", "voice"), ("2026-07-15T13:00:00Z", "sms"),
                       ("2026-07-15T15:00:00Z", "voice"))


@pytest.mark.parametrize("contact,history,verdict,next_at", [
    (FLORIDA, THREE_TODAY, "defer", "2026-07-15T17:00:00Z"),       # free 24 h after the oldest
    (OKLAHOMA, THREE_TODAY, "defer", "2026-07-15T17:00:00Z"),
    (MARYLAND, THREE_TODAY, "defer", "2026-07-15T17:00:00Z"),
    (FLORIDA, THREE_TODAY[1:], "allow", None),                     # two attempts: under the cap
    (FLORIDA, attempts(("2026-07-14T15:59:00Z", "voice"), *[(a["at"], a["channel"]) for a in THREE_TODAY[1:]]),
     "allow", None),                                               # oldest is more than 24 h old
    ({}, THREE_TODAY, "allow", None),                              # NY has no cap
])
def test_frequency_cap(contact, history, verdict, next_at):
    decision = decide(contact=contact, history=history)
    assert_decision(decision, verdict, ["frequency_cap"] if verdict == "defer" else [], next_at)
    if verdict == "defer":
        state = decision["states"][0]
        assert rules(decision) == {f"state.{state}.cap"}
