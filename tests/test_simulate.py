"""`outbound simulate`: a dry run over simulated time, by the real gate, that stores nothing."""
from __future__ import annotations

import json

from freezegun import freeze_time
from sqlalchemy import text

from outbound.cli import app
from outbound.db import get_engine

CONTACTS = "phone,state,line_type\n(214) 555-0101,TX,landline\n(801) 555-0102,UT,landline\n+1 212 555 0103,NY,landline\n"


def test_simulate_defers_by_the_rules_and_stores_nothing(cli_runner, outbound_env, tmp_path):
    (tmp_path / "list.csv").write_text(CONTACTS)
    # Registry data for each contact's area code (an area code without data blocks telemarketing).
    (tmp_path / "registry.txt").write_text("212,5550103\n214,9999999\n801,9999999\n")
    assert cli_runner.invoke(app, ["dnc", "import", "national", str(tmp_path / "registry.txt"),
                                   "--synced-at", "2026-07-18T00:00:00Z"]).exit_code in (0, 2)
    created = cli_runner.invoke(app, ["campaign", "create", "july", "--channel", "voice", "--purpose", "telemarketing",
                                      "--voice", "live", "--caller-id", "+12125550100", "--cps", "1"])
    assert created.exit_code == 0, created.output
    assert cli_runner.invoke(app, ["import", "contacts", str(tmp_path / "list.csv"), "--campaign", "july"]).exit_code == 0
    # Sunday 2026-07-19, 14:00 UTC: 09:00 in Dallas (TX opens at noon on Sundays), 08:00 in Utah
    # (closed on Sundays), 10:00 in New York (on the registry, no consent, no relationship).
    result = cli_runner.invoke(app, ["simulate", "july", "--start", "2026-07-19T14:00:00Z", "--days", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert (report["allowed"], report["blocked"]) == (2, 1)
    assert report["blocked_by_reason"] == {"dnc_national": 1}
    assert report["deferred_by_reason"]["calling_window"] == 2
    assert report["allowed_by_state"] == {"TX": 1, "UT": 1}
    assert report["allowed_by_day"] == {"2026-07-19": 1, "2026-07-20": 1}   # TX at noon, UT on Monday
    with get_engine().connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM decisions")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM attempts")).scalar_one() == 0


def test_simulate_starts_at_the_next_minute_when_no_start_is_given(cli_runner, outbound_env, tmp_path):
    (tmp_path / "list.csv").write_text(CONTACTS)
    created = cli_runner.invoke(app, ["campaign", "create", "now", "--channel", "voice", "--purpose", "informational",
                                      "--voice", "live", "--caller-id", "+12125550100"])
    assert created.exit_code == 0, created.output
    assert cli_runner.invoke(app, ["import", "contacts", str(tmp_path / "list.csv"), "--campaign", "now"]).exit_code == 0
    with freeze_time("2026-12-04T17:30:42Z"):
        result = cli_runner.invoke(app, ["simulate", "now", "--days", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["start"].startswith("2026-12-04T17:31:00")     # the next whole minute


def test_simulate_refuses_a_start_without_a_zone(cli_runner, outbound_env):
    result = cli_runner.invoke(app, ["simulate", "any", "--start", "2026-12-04T17:30:00"])
    assert result.exit_code == 2
    assert "not an ISO 8601 instant with a zone" in result.output


def test_simulate_without_a_start_counts_the_consents_just_imported(cli_runner, outbound_env, tmp_path):
    (tmp_path / "list.csv").write_text("phone,state,line_type\n+1 907 555 0140,AK,mobile\n")
    (tmp_path / "registry.txt").write_text("907,9999999\n")
    assert cli_runner.invoke(app, ["dnc", "import", "national", str(tmp_path / "registry.txt")]).exit_code == 0
    consent = {"type": "consent", "phone": "+19075550140", "kind": "written", "channels": ["sms"],
               "purposes": ["telemarketing"], "seller": "Sunrise Solar", "granted_at": "2026-02-20T15:00:00Z",
               "source": "web_form", "certificate_id": "cert-1"}
    (tmp_path / "consents.jsonl").write_text(json.dumps(consent) + "\n")
    assert cli_runner.invoke(app, ["consent", "import", str(tmp_path / "consents.jsonl")]).exit_code == 0
    created = cli_runner.invoke(app, ["campaign", "create", "texts", "--channel", "sms", "--purpose", "telemarketing",
                                      "--caller-id", "+12125550100", "--seller", "Sunrise Solar",
                                      "--script", "Sunrise Solar: your quote is ready. Reply STOP to opt out."])
    assert created.exit_code == 0, created.output
    assert cli_runner.invoke(app, ["import", "contacts", str(tmp_path / "list.csv"), "--campaign", "texts"]).exit_code == 0
    result = cli_runner.invoke(app, ["simulate", "texts", "--days", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert "consent_missing" not in report["blocked_by_reason"], report
    assert report["allowed"] == 1
