"""A hostile review of the amended gate contract (DESIGN.md, "The gate contract"), run through
`outbound gate check` as the independent suites run it. Each test names the hole it closes."""
from __future__ import annotations

import json
from pathlib import Path

from outbound.cli import app
from outbound.lists.placement import Placer, place

# A telemarketing call a person dials by hand, live, to a landline: it needs no consent, so only
# the windows, holidays, caps and DNC facts can stop it.
_HAND_DIALED = {
    "at": "2026-07-15T16:00:00Z", "channel": "voice", "purpose": "telemarketing", "voice": "live",
    "automated": False, "contact": {"phone": "(212) 555-0123", "line_type": "landline"},
    "consents": [], "revocations": [],
    "dnc": {"national": {"listed": False, "registered_on": None, "synced_at": "2026-07-14T00:00:00Z"},
            "state": [], "internal": False, "litigator": False},
    "ebr": {"last_transaction_at": None, "last_inquiry_at": None}, "history": [],
}


def _check(cli_runner, tmp_path: Path, scenarios: list[dict]) -> tuple[int, list[dict]]:
    path = tmp_path / "review.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in scenarios))
    result = cli_runner.invoke(app, ["gate", "check", str(path)])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def _scenario(**changes) -> dict:
    scenario = json.loads(json.dumps(_HAND_DIALED))
    scenario.update(changes)
    return scenario


# --- hole: the ZIP's state was dropped when a state was also given ---------------------------
# "Candidate states are the number's area-code state, plus the given state, plus the ZIP's state
# when a ZIP is given." A New York number with state NY and a Miami ZIP was decided under New
# York's rules alone: called at 20:30 EDT, past Florida's 20:00 close.

def test_the_zips_state_is_a_candidate_even_when_a_state_is_given(cli_runner, outbound_env, tmp_path):
    contact = {"phone": "(212) 555-0123", "state": "NY", "zip": "33101", "line_type": "landline"}
    code, (evening, saturday_maine) = _check(cli_runner, tmp_path, [
        _scenario(at="2026-07-16T00:30:00Z", contact=contact),
        _scenario(at="2026-07-18T16:00:00Z", contact={**contact, "zip": "04101"}),
    ])
    assert code == 0
    assert evening["states"] == ["FL", "NY"]
    assert evening["verdict"] == "defer"
    assert [r["rule"] for r in evening["reasons"]] == ["state.FL.hours"]
    assert evening["next_allowed_at"] == "2026-07-16T12:00:00Z"
    assert saturday_maine["states"] == ["ME", "NY"]
    assert saturday_maine["verdict"] == "defer"           # Maine: weekdays only


def test_an_imported_contact_keeps_both_its_states_and_its_zips(outbound_env):
    assert place("+12125550123", "33101", "NY").states == "FL NY"
    placer = Placer()
    _zip, _state, placement = placer.resolve("+12125550123", "33101", "NY")
    assert placement.states == "FL NY"
    assert placement.timezones == "America/New_York"
    # the ZIP's zone alone joins the number's (not every zone of the given state), as before
    assert placer.resolve("+12125550123", "90001", "NY")[2] .timezones == "America/Los_Angeles America/New_York"


# --- hole: a UTF-8 byte order mark cost the first scenario its decision ------------------------
# A file saved by a Windows editor starts with EF BB BF; its first line printed
# {"error": "not valid JSON: expected value at line 1 column 1"} and the run exited 2.

def test_a_byte_order_mark_does_not_cost_the_first_decision(cli_runner, outbound_env, tmp_path):
    line = json.dumps(_scenario()).encode()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line + b"\n" + line + b"\n")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(_scenario(), indent=2).encode())
    plain = cli_runner.invoke(app, ["gate", "check", str(tmp_path / "bom.jsonl")])
    single = cli_runner.invoke(app, ["gate", "check", str(tmp_path / "bom.json")])
    assert (plain.exit_code, single.exit_code) == (0, 0)
    first, second = plain.stdout.splitlines()
    assert first == second == single.stdout.strip()
    assert json.loads(first)["verdict"] == "allow"


# --- hole: a state list loaded under a code that names no state ------------------------------
# `outbound dnc import state ZZ list.txt` exited 0 and stored a "state:ZZ" source, so a typo (FK
# for FL) looked like a successful refresh while Florida's list stayed as old as it was.

def test_a_state_list_for_no_state_is_refused_and_stores_nothing(cli_runner, outbound_env, tmp_path):
    numbers = tmp_path / "list.txt"
    numbers.write_text("3055550101\n3055550102\n")
    refused = cli_runner.invoke(app, ["dnc", "import", "state", "ZZ", str(numbers)])
    assert refused.exit_code == 2
    assert "'ZZ'" in refused.output and "USPS" in refused.output
    status = cli_runner.invoke(app, ["dnc", "status", "--json"])
    assert not any(source["source"].startswith("state:") for source in json.loads(status.stdout))
    loaded = cli_runner.invoke(app, ["dnc", "import", "state", "fl", str(numbers)])
    assert loaded.exit_code == 0, loaded.output
