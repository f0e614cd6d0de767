"""The gate contract, strictly (issue 12 section 4): what a scenario may hold, errors that name
the field by its path, and no input, however odd, stopping a run."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from consent.check import check_line, check_lines
from consent.rules import load_pack
from consent.scenario import ScenarioError, parse_scenario, parse_scenario_text

BASE: dict[str, Any] = {
    "at": "2026-07-15T16:00:00Z", "channel": "voice", "purpose": "telemarketing", "voice": "live",
    "automated": False, "contact": {"phone": "+12125550123", "state": "NY"},
    "consents": [{"kind": "written", "channels": ["voice"], "purposes": ["telemarketing"],
                  "granted_at": "2026-01-01T00:00:00Z", "expires_at": None, "evidence": "form 7"}],
    "revocations": [{"at": "2026-02-01T00:00:00Z", "channels": ["sms"], "via": "sms_stop"}],
    "dnc": {"national": {"listed": False, "registered_on": None, "synced_at": "2026-07-10T00:00:00Z"},
            "state": [], "internal": False, "litigator": False},
    "ebr": {"last_transaction_at": None, "last_inquiry_at": None},
    "history": [{"at": "2026-07-14T16:00:00Z", "channel": "voice"}],
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    """BASE with the field at a dotted path (list items by index: `consents.0.granted_at`) set."""
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    target: Any = raw
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    return raw


def error_of(raw: Any) -> str:
    """The error for a scenario, checked to be the same from decoded JSON and from JSON text."""
    with pytest.raises(ScenarioError) as decoded:
        parse_scenario(raw)
    with pytest.raises(ScenarioError) as text:
        parse_scenario_text(json.dumps(raw))
    assert str(decoded.value) == str(text.value)
    return str(decoded.value)


def test_the_base_scenario_is_valid():
    parse_scenario(BASE)
    parse_scenario_text(json.dumps(BASE))


# --- booleans are JSON booleans -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["automated", "dnc.internal", "dnc.litigator", "dnc.national.listed"])
@pytest.mark.parametrize("value", ["false", "no", 0, 1, "true", None, [], {}])
def test_booleans_are_not_coerced(path, value):
    if value is None and path == "automated":
        value = "0"         # automated has a default, but null is no boolean either: covered below
    message = error_of(with_value(path, value))
    assert message.startswith(f"{path}: expected a JSON boolean"), message


def test_a_boolean_error_says_what_was_given():
    assert error_of(with_value("dnc.internal", "false")) == \
        'dnc.internal: expected a JSON boolean (true or false), got string "false"'
    assert error_of(with_value("automated", 0)) == "automated: expected a JSON boolean (true or false), got number 0"
    assert error_of(with_value("automated", None)).startswith("automated: expected a JSON boolean")


# --- instants: ISO 8601 strings with a zone, 1900-2199 ----------------------------------------------

INSTANT_PATHS = ["at", "consents.0.granted_at", "consents.0.expires_at", "revocations.0.at",
                 "dnc.national.synced_at", "ebr.last_transaction_at", "ebr.last_inquiry_at", "history.0.at"]
PATH_NAMES = {"consents.0.granted_at": "consents[0].granted_at", "consents.0.expires_at": "consents[0].expires_at",
              "revocations.0.at": "revocations[0].at", "history.0.at": "history[0].at"}


@pytest.mark.parametrize("path", INSTANT_PATHS)
@pytest.mark.parametrize("value", [
    1784131200, 1784131200.5, "1784131200", True,              # UNIX numbers, as numbers or text
    "2026-07-15T16:00:00",                                     # no zone
    "2026-07-15", "16:00:00Z", "2026-07-15 16:00:00Z", "20260715T160000Z", "tomorrow", "",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z",
    "2026-02-30T12:00:00Z", "2026-07-15T24:00:00Z", "2026-07-15T16:00:00+24:00", ["2026-07-15T16:00:00Z"],
])
def test_instants_are_strict(path, value):
    message = error_of(with_value(path, value))
    assert message.startswith(f"{PATH_NAMES.get(path, path)}: "), message


@pytest.mark.parametrize("value", ["1900-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "2199-12-31T23:59:59-12:00",
                                   "1900-01-01T00:00:00+14:00", "2026-07-15T16:00Z", "2026-07-15T12:00:00.25-04:00",
                                   "2026-07-15T16:00:00+00:00", "2026-07-15T21:30:00+0530"])
def test_instants_in_range_with_a_zone_are_valid(value):
    for path in INSTANT_PATHS:
        parse_scenario(with_value(path, value))


def test_instant_errors_say_why():
    assert error_of(with_value("at", 1784131200)).startswith(
        "at: expected an ISO 8601 date-time string with a zone (e.g. 2026-07-15T16:00:00Z), got number 1784131200")
    assert "year 1 is outside 1900-2199" in error_of(with_value("at", "0001-01-01T00:00:00Z"))
    assert "year 9999 is outside 1900-2199" in error_of(with_value("at", "9999-12-31T23:59:59Z"))
    assert error_of(with_value("at", "2026-07-15T16:00:00")).startswith("at: needs a time zone")


# --- errors name the field by its path ------------------------------------------------------------

@pytest.mark.parametrize("raw,start", [
    (with_value("dnc", None), "dnc: expected a JSON object, got null"),
    (with_value("dnc", []), "dnc: expected a JSON object, got an array"),
    (with_value("contact", "+12125550123"), "contact: expected a JSON object"),
    (with_value("consents", None), "consents: expected a JSON array, got null"),
    (with_value("consents.0", "written"), "consents[0]: expected a JSON object"),
    (with_value("consents.0.granted_at", "2026-01-01"), "consents[0].granted_at: "),
    (with_value("consents.0.channels", []), "consents[0].channels: needs at least one item"),
    (with_value("consents.0.channels", ["voice", "fax"]), "consents[0].channels[1]: expected one of"),
    (with_value("dnc.state", ["NY", 36]), "dnc.state[1]: expected a JSON string, got number 36"),
    (with_value("dnc.state", ["NY", "ZZ"]), "dnc.state[1]: unknown state code"),
    (with_value("history.0.colour", "red"), "history[0].colour: unknown field"),
    (with_value("contact.phone", 2125550123), "contact.phone: expected a JSON string, got number 2125550123"),
    (with_value("dnc.national.registered_on", 20200101), "dnc.national.registered_on: expected a JSON string"),
    (with_value("channel", "fax"), "channel: expected one of 'voice' or 'sms', got string \"fax\""),
    (with_value("contact.state", "ZZ"), "contact.state: unknown state code"),
    ({**BASE, "priority": 1}, "priority: unknown field"),
])
def test_errors_name_the_path(raw, start):
    assert error_of(raw).startswith(start), error_of(raw)


@pytest.mark.parametrize("raw", [None, [], [BASE], "scenario", 42, True, 1.5])
def test_a_scenario_that_is_not_an_object(raw):
    assert error_of(raw).startswith("scenario: expected a JSON object, got ")


# --- no input stops a run -------------------------------------------------------------------------

ODD_LINES: list[bytes] = [
    json.dumps(with_value("at", "0001-01-01T00:00:00Z")).encode(),
    json.dumps(with_value("at", "9999-12-31T23:59:59Z")).encode(),
    json.dumps(with_value("at", "9999-12-31T23:59:59-12:00")).encode(),
    json.dumps(with_value("at", "1899-12-31T23:59:59Z")).encode(),
    json.dumps(with_value("at", "2200-01-01T00:00:00Z")).encode(),
    json.dumps(with_value("ebr.last_transaction_at", "9999-12-31T00:00:00Z")).encode(),
    json.dumps(with_value("consents.0.expires_at", "0001-01-01T00:00:00+00:00")).encode(),
    b'{"at": NaN}', b'{"at": 1e999}', b'{"at": -1e999}', b'{"at": ' + b"9" * 5000 + b"}",
    json.dumps(with_value("history", [{"at": 10 ** 400, "channel": "voice"}])).encode(),
    b"[" * 100_000, b'{"a":' * 50_000, b"null", b"[]", b"42", b'"text"', b"true", b"{", b"}",
    b"\xff\xfe\x00junk", json.dumps(BASE).encode()[:-1] + b"\xc3}", b"\x00",
    json.dumps(with_value("contact", {"phone": {"nested": [[[{}]]]}})).encode(),
    json.dumps(with_value("consents", [[]] * 1000)).encode(),
]
# In range, but at the edges of what the gate must still decide.
EDGE_LINES: list[bytes] = [json.dumps(with_value(path, value)).encode() for path, value in [
    ("at", "1900-01-01T00:00:00Z"), ("at", "2199-12-31T23:59:59Z"), ("at", "2199-12-31T23:59:59-12:00"),
    ("at", "1900-01-01T00:00:00+14:00"), ("ebr.last_transaction_at", "2199-12-31T23:59:59Z"),
    ("history.0.at", "1900-01-01T00:00:00Z"), ("consents.0.expires_at", "2199-12-31T00:00:00Z"),
]] + [json.dumps({**with_value("at", at), "contact": {"phone": phone, "state": state}}).encode()
      for at in ("1900-01-01T03:00:00Z", "1950-06-01T23:59:59.999999Z", "2199-12-31T23:59:59Z")
      for phone, state in (("+18085550123", "HI"), ("+19075550123", "AK"), ("+18015550123", "UT"),
                           ("+16715550123", None), ("+17875550123", None), ("+13055550123", "FL"))]


def test_no_input_stops_a_run():
    good = json.dumps(BASE).encode()
    lines = [line for odd in ODD_LINES for line in (odd, good)]
    results = list(check_lines(lines, load_pack()))
    assert len(results) == len(lines)
    for (number, output, valid), line in zip(results, lines):
        parsed = json.loads(output)
        assert valid == (line == good), (number, output)
        assert ("verdict" in parsed) == valid and ("error" in parsed) != valid, output
        assert "\n" not in output


def test_the_edges_of_the_range_are_decided():
    for line in EDGE_LINES:
        output, valid = check_line(line, load_pack())
        assert valid, output
        assert json.loads(output)["verdict"] in ("allow", "defer", "block")


# --- the command line -----------------------------------------------------------------------------

def test_gate_check_jsonl_with_odd_lines_decides_every_other_line(cli_runner, outbound_env: Path, tmp_path: Path):
    from outbound.cli import app

    good = json.dumps(BASE).encode()
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(line for odd in ODD_LINES for line in (odd.replace(b"\n", b" "), good)) + b"\n")
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    assert result.exit_code == 2
    outputs = result.stdout.splitlines()
    assert len(outputs) == 2 * len(ODD_LINES)
    assert all("error" in json.loads(line) for line in outputs[0::2])
    assert all(json.loads(line)["verdict"] == "allow" for line in outputs[1::2])
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_gate_check_json_with_an_extreme_year_is_an_error_not_a_crash(cli_runner, outbound_env: Path,
                                                                      tmp_path: Path, value):
    from outbound.cli import app

    path = tmp_path / "one.json"
    path.write_text(json.dumps(with_value("at", value)))
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"].startswith("at: year ")


def test_json_and_jsonl_print_the_same_compact_line(cli_runner, outbound_env: Path, tmp_path: Path):
    from outbound.cli import app

    for raw in (BASE, with_value("at", "2026-07-16T01:30:00Z"), with_value("dnc.internal", "no")):
        single, lines = tmp_path / "one.json", tmp_path / "one.jsonl"
        single.write_text(json.dumps(raw, indent=2))           # a .json file may span lines
        lines.write_text(json.dumps(raw) + "\n")
        one = cli_runner.invoke(app, ["gate", "check", str(single)])
        many = cli_runner.invoke(app, ["gate", "check", str(lines)])
        assert one.exit_code == many.exit_code
        assert one.stdout == many.stdout
        assert one.stdout.count("\n") == 1
        assert one.stdout == json.dumps(json.loads(one.stdout), ensure_ascii=False, separators=(",", ":")) + "\n"


def test_api_names_the_path_in_a_422(env_api_users):
    from fastapi.testclient import TestClient

    from api.app import create_app

    client = TestClient(create_app(), headers=env_api_users.headers("compliance"))
    for raw, start in [(with_value("dnc.internal", "false"), "dnc.internal: expected a JSON boolean"),
                       (with_value("at", 1784131200), "at: expected an ISO 8601"),
                       (with_value("consents.0.granted_at", "2026-01-01T00:00:00"), "consents[0].granted_at: needs a time zone"),
                       (with_value("dnc", None), "dnc: expected a JSON object, got null"),
                       (with_value("at", "9999-12-31T23:59:59Z"), "at: year 9999")]:
        response = client.post("/v1/gate/check", json=raw)
        assert response.status_code == 422, response.text
        assert response.json()["error"].startswith(start), response.json()
    assert client.post("/v1/gate/check", json=BASE).status_code == 200
