"""The JSON contract of `gate check` (DESIGN.md, "The gate contract"): scenario in, decision out."""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from consent.gate import evaluate
from consent.rules import load_pack
from consent.scenario import ScenarioError, decision_json, decision_to_dict, parse_scenario, parse_scenario_text

# The contract's own example scenario, comments removed.
EXAMPLE: dict[str, Any] = {
    "at": "2026-07-15T16:00:00Z",
    "channel": "voice",
    "purpose": "telemarketing",
    "voice": "artificial",
    "automated": True,
    "contact": {"phone": "(212) 555-0123", "state": "NY", "zip": "10001", "line_type": "mobile"},
    "consents": [{"kind": "written", "channels": ["voice", "sms"], "purposes": ["telemarketing"],
                  "granted_at": "2026-01-01T00:00:00Z", "expires_at": None, "evidence": "..."}],
    "revocations": [{"at": "2026-07-10T12:00:00Z", "channels": ["sms"], "via": "sms_stop"}],
    "dnc": {"national": {"listed": False, "registered_on": None, "synced_at": "2026-07-10T00:00:00Z"},
            "state": [], "internal": False, "litigator": False},
    "ebr": {"last_transaction_at": None, "last_inquiry_at": None},
    "history": [{"at": "2026-07-15T14:00:00Z", "channel": "voice"}],
}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def decide(raw: dict[str, Any]) -> dict[str, Any]:
    request, facts, at = parse_scenario(raw)
    return decision_to_dict(evaluate(request, facts, load_pack(), at))


def changed(path: str, value: Any) -> dict[str, Any]:
    """EXAMPLE with the field at a dotted path set (`contact.zip`, `consents.0.kind`)."""
    raw = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    target: Any = raw
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return raw


def without(path: str) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    target: Any = raw
    for part in parents:
        target = target[part]
    del target[last]
    return raw


# --- the decision -------------------------------------------------------------------------------

def test_the_example_scenario_is_allowed():
    decision = decide(EXAMPLE)
    assert decision["verdict"] == "allow"
    assert decision["timezones"] == ["America/New_York"] and decision["states"] == ["NY"]


@pytest.mark.parametrize("raw", [
    EXAMPLE,
    changed("at", "2026-07-16T02:00:00Z"),                                      # defer
    changed("contact.phone", "hello"),                                          # block
])
def test_decision_keys_in_contract_order(raw):
    decision = json.loads(decision_json(evaluate(*_parsed(raw))))
    assert list(decision) == ["verdict", "reasons", "next_allowed_at", "timezones", "states", "rules_version"]
    assert decision["verdict"] in ("allow", "defer", "block")
    assert isinstance(decision["rules_version"], str) and decision["rules_version"]
    for reason in decision["reasons"]:
        assert list(reason) == ["code", "rule", "detail"]
        assert all(isinstance(reason[key], str) and reason[key] for key in reason)


def _parsed(raw):
    request, facts, at = parse_scenario(raw)
    return request, facts, load_pack(), at


def test_the_contract_example_decision():
    # The contract's example: FL closes at 20:00 local; the gate defers to 08:00 the next morning.
    raw = changed("at", "2026-07-16T00:30:00Z")
    raw["contact"] = {"phone": "+13055550123", "line_type": "mobile"}
    raw["history"] = []
    decision = decide(raw)
    assert decision["verdict"] == "defer"
    assert [(r["code"], r["rule"]) for r in decision["reasons"]] == [("calling_window", "state.FL.hours")]
    assert decision["next_allowed_at"] == "2026-07-16T12:00:00Z"
    assert decision["timezones"] == ["America/New_York"] and decision["states"] == ["FL"]


@pytest.mark.parametrize("at", [
    "2026-07-16T02:00:00Z",
    "2026-07-15T22:00:00-04:00",            # the same instant with an offset: still serialised with Z
    "2026-07-16T02:00:00.250000+00:00",
])
def test_instants_are_serialised_in_utc_with_z(at):
    decision = json.loads(decision_json(evaluate(*_parsed(changed("at", at)))))
    assert decision["verdict"] == "defer"
    assert ISO_Z.match(decision["next_allowed_at"]), decision["next_allowed_at"]
    assert decision["next_allowed_at"] == "2026-07-16T12:00:00Z"


def test_an_offset_instant_decides_like_its_utc_twin():
    utc = decision_json(evaluate(*_parsed(changed("at", "2026-07-16T00:30:00Z"))))
    offset = decision_json(evaluate(*_parsed(changed("at", "2026-07-15T20:30:00-04:00"))))
    assert utc == offset


def test_allow_and_block_have_no_next_allowed_at():
    assert decide(EXAMPLE)["next_allowed_at"] is None
    assert decide(changed("contact.phone", "hello"))["next_allowed_at"] is None


def test_decision_json_is_valid_json_of_the_dict():
    decision = evaluate(*_parsed(changed("at", "2026-07-16T02:00:00Z")))
    assert json.loads(decision_json(decision)) == decision_to_dict(decision)


# --- unparsable phones are decisions, not errors --------------------------------------------------

@pytest.mark.parametrize("phone", ["12345", "+44 20 7946 0000", "hello"])
def test_unparsable_phone_is_a_block_not_an_error(phone):
    decision = decide(changed("contact.phone", phone))
    assert decision["verdict"] == "block"
    assert [r["code"] for r in decision["reasons"]] == ["invalid_number"]


# --- invalid scenarios: ScenarioError naming the field -------------------------------------------

@pytest.mark.parametrize("raw,field", [
    pytest.param({**EXAMPLE, "priority": 1}, "priority", id="unknown top-level field"),
    pytest.param(changed("contact.email", "a@example.com"), "email", id="unknown field in contact"),
    pytest.param(changed("consents.0.scope", "all"), "scope", id="unknown field in a consent"),
    pytest.param(changed("dnc.national.source", "ftc"), "source", id="unknown field in dnc.national"),
    pytest.param(changed("history.0.result", "busy"), "result", id="unknown field in history"),
    pytest.param(changed("channel", "fax"), "channel", id="wrong channel"),
    pytest.param(changed("purpose", "marketing"), "purpose", id="wrong purpose"),
    pytest.param(changed("voice", "robot"), "voice", id="wrong voice"),
    pytest.param(changed("contact.line_type", "satellite"), "line_type", id="wrong line_type"),
    pytest.param(changed("consents.0.kind", "implied"), "kind", id="wrong consent kind"),
    pytest.param(changed("consents.0.channels", ["email"]), "channels", id="wrong consent channel"),
    pytest.param(changed("revocations.0.channels", ["pager"]), "channels", id="wrong revocation channel"),
    pytest.param(changed("history.0.channel", "email"), "channel", id="wrong history channel"),
    pytest.param(changed("at", "2026-07-15T16:00:00"), "at", id="naive at"),
    pytest.param(changed("consents.0.granted_at", "2026-01-01T00:00:00"), "granted_at", id="naive granted_at"),
    pytest.param(changed("dnc.national.synced_at", "2026-07-10T00:00:00"), "synced_at", id="naive synced_at"),
    pytest.param(changed("at", "tomorrow"), "at", id="unparsable at"),
    pytest.param(without("at"), "at", id="missing at"),
    pytest.param(without("contact"), "contact", id="missing contact"),
    pytest.param(without("contact.phone"), "phone", id="missing phone"),
    pytest.param(without("voice"), "voice", id="voice call without a voice"),
    pytest.param(changed("contact.state", "ZZ"), "state", id="unknown state code, with ZIP"),
    pytest.param(changed("contact", {"phone": "+12125550123", "state": "XX"}), "state", id="unknown state code, no ZIP"),
])
def test_invalid_scenario_names_the_field(raw, field):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(raw)
    assert field in str(error.value)


@pytest.mark.parametrize("raw", [[], [EXAMPLE], "scenario", 42, None, True])
def test_non_object_is_a_scenario_error(raw):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(raw)
    assert "object" in str(error.value)


@pytest.mark.parametrize("text", ["[1, 2]", "42", "null", '"text"'])
def test_non_object_json_text_is_a_scenario_error(text):
    with pytest.raises(ScenarioError, match="object"):
        parse_scenario_text(text)


def test_invalid_json_text_is_a_scenario_error():
    with pytest.raises(ScenarioError):
        parse_scenario_text('{"at": ')


def test_scenario_error_is_a_value_error():
    # Callers that catch ValueError (the CLI's JSONL loop) see it too.
    assert issubclass(ScenarioError, ValueError)


def test_text_needs_no_voice():
    raw = without("voice")
    raw["channel"] = "sms"
    raw["revocations"] = []         # the example revokes texts
    assert decide(raw)["verdict"] == "allow"
