"""Consent belongs to a seller (issue 12, section 5).

A consent counts only for campaigns of the seller that obtained it; written consent without
evidence is refused when it is recorded (file import, CLI, API), naming the line; `consent show`
and the why page give each consent's seller, evidence and standing now; migration 0005 gives
consents recorded without a seller one that fails closed.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from consent import records
from consent.ledger_io import ConsentIn, EvidenceIn, load_json_bytes, same_seller
from consent.rules import load_pack
from consent.tables import ConsentRecord
from consent.types import Channel, ConsentGrant, ConsentKind, Facts, Purpose
from outbound import audit
from outbound.campaigns import campaign_seller, find_campaign
from outbound.db import ensure_schema, session_scope
from outbound.migrations import downgrade_to
from scheduler.facts import for_seller
from scheduler.simulate import simulate
from dispatch_support import NOON_NEW_YORK, FakeAdapter, FakeRegistry, running_campaign
from consent_support import (
    SELLER_FILLED_BY_MIGRATION, consent_api_client, consent_cli, dispatch_at_noon, insert_draft_campaigns,
    outcome_by_campaign,
)

PACK = load_pack()
PHONE = "+12125550123"
CERTIFICATE = {"certificate_id": "cert-acme-1"}


def consent_record(**overrides) -> dict:
    return {"type": "consent", "phone": PHONE, "kind": "written", "channels": ["voice", "sms"],
            "purposes": ["telemarketing"], "seller": "Acme Solar", "granted_at": "2026-01-01T00:00:00Z",
            "evidence": CERTIFICATE, **overrides}


def grant_consent(engine, **overrides) -> ConsentRecord:
    with session_scope(engine) as session:
        record = records.add_consent(session, ConsentIn.model_validate(consent_record(**overrides)),
                                     actor="test", at=NOON_NEW_YORK - timedelta(days=30), audit=audit.append).row
        session.expunge(record)
        return record


# --- the engine: only the campaign's seller's consent counts --------------------------------------

def seller_campaign(engine, name: str, seller: str | None) -> int:
    conversation = {"seller_name": seller} if seller else {}
    # Prerecorded telemarketing needs written consent covering voice telemarketing.
    return running_campaign(engine, [PHONE], name=name, purpose="telemarketing", voice="prerecorded",
                            settings={"conversation": conversation})


def test_a_consent_of_one_seller_does_not_let_another_sellers_campaign_call(sqlite_engine):
    acme = seller_campaign(sqlite_engine, "acme-calls", "Acme Solar")
    beta = seller_campaign(sqlite_engine, "beta-calls", "Beta Energy")
    grant_consent(sqlite_engine, seller="  acme   SOLAR ")        # case and spaces do not matter
    adapter = FakeAdapter()

    report = dispatch_at_noon(sqlite_engine, adapter, pack=PACK, registry=FakeRegistry())

    assert (report.allowed, report.blocked) == (1, 1)
    outcomes = outcome_by_campaign(sqlite_engine, "consents")
    status, error, consents = outcomes[beta]
    assert status == "blocked" and "consent_missing" in error and consents == []
    status, error, consents = outcomes[acme]
    assert status == "dialing" and len(consents) == 1
    # The stored scenario is the gate contract's: it never carries a seller.
    assert "seller" not in consents[0]
    assert [request.to for _sid, request in adapter.calls] == [PHONE]


def test_a_campaign_without_a_seller_name_is_its_own_seller(sqlite_engine):
    named = seller_campaign(sqlite_engine, "Acme Solar", None)      # seller: the campaign's name
    grant_consent(sqlite_engine)
    dispatch_at_noon(sqlite_engine, FakeAdapter(), pack=PACK, registry=FakeRegistry())
    assert outcome_by_campaign(sqlite_engine, "consents")[named][0] == "dialing"


def test_the_dry_run_keeps_only_the_campaigns_sellers_consent(sqlite_engine):
    seller_campaign(sqlite_engine, "acme-calls", "Acme Solar")
    seller_campaign(sqlite_engine, "beta-calls", "Beta Energy")
    grant_consent(sqlite_engine)

    def run(name):
        return simulate(sqlite_engine, name, start=NOON_NEW_YORK, days=1, pack=PACK, registry=FakeRegistry())

    assert run("beta-calls").blocked_by_reason == {"consent_missing": 1}
    assert run("acme-calls").blocked_by_reason == {}


def grant(seller: str | None) -> ConsentGrant:
    return ConsentGrant(kind=ConsentKind.WRITTEN, channels=frozenset({Channel.VOICE}),
                        purposes=frozenset({Purpose.TELEMARKETING}), granted_at=NOON_NEW_YORK, seller=seller)


@pytest.mark.parametrize("consent_seller,campaign_seller,counts", [
    ("Acme Solar", "Acme Solar", True),
    ("Acme  Solar", "acme solar", True),
    ("Acme Solar", "Acme Solar Inc", False),
    ("unknown", "unknown", False),            # the migration's placeholder matches no campaign
    ("Unknown", "UNKNOWN", False),
    (None, "Acme Solar", False),
])
def test_for_seller_keeps_only_that_sellers_consents(consent_seller, campaign_seller, counts):
    facts = Facts(consents=(grant(consent_seller),))
    assert bool(for_seller(facts, campaign_seller).consents) is counts
    assert same_seller(consent_seller, campaign_seller) is counts


# --- recording: a consent names its seller, written consent its evidence -------------------------

def jsonl(*rows: dict) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


WRITTEN_WITHOUT_EVIDENCE = consent_record(evidence={})
LEDGER = jsonl(consent_record(),                                       # line 1: good
               WRITTEN_WITHOUT_EVIDENCE,                               # line 2
               consent_record(kind="express", evidence={}),            # line 3: express needs no proof
               {k: v for k, v in consent_record().items() if k != "seller"},    # line 4
               consent_record(seller="unknown"),                       # line 5
               consent_record(evidence={"source": "web form"}, purposes=["informational"]))  # line 6: good


def test_a_ledger_file_refuses_written_consent_without_evidence_and_consent_without_seller():
    loaded = load_json_bytes(LEDGER)
    assert [row.line for row in loaded.rows] == [1, 3, 6]
    reasons = {error.line: error.reason for error in loaded.errors}
    assert sorted(reasons) == [2, 4, 5]
    assert reasons[2].startswith("evidence: written consent needs its evidence")
    assert reasons[4] == "seller: required"
    assert "placeholder" in reasons[5]


def test_add_consent_refuses_a_record_built_without_validation(session):
    unchecked = ConsentIn.model_validate(consent_record()).model_copy(update={"evidence": EvidenceIn()})
    with pytest.raises(records.LedgerError, match="written consent needs its evidence"):
        records.add_consent(session, unchecked, actor="t", at=NOON_NEW_YORK, audit=audit.append)


@pytest.fixture
def cli(outbound_env_db, cli_runner, monkeypatch):
    return consent_cli(cli_runner, monkeypatch, with_campaigns=True)


def test_cli_import_names_each_refused_line_and_loads_the_rest(cli, tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(LEDGER)

    result = cli("consent", "import", str(path), "--json")

    assert result.exit_code == 2, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["loaded"]["consent"] == 3
    assert [error["line"] for error in summary["errors"]] == [2, 4, 5]
    assert "written consent needs its evidence" in summary["errors"][0]["reason"]


@pytest.fixture
def api(engine, api_users):
    yield from consent_api_client(engine, api_users, NOON_NEW_YORK)


def test_the_api_refuses_written_consent_without_evidence(api, engine):
    body = {k: v for k, v in WRITTEN_WITHOUT_EVIDENCE.items() if k != "type"}
    response = api.post("/v1/consent", json=body)
    assert response.status_code == 422
    assert "written consent needs its evidence" in response.text

    upload = api.post("/v1/consent/import", files={"file": ("ledger.jsonl", LEDGER, "application/json")})
    assert upload.status_code == 200, upload.text
    assert [(error["line"], error["reason"][:44]) for error in upload.json()["errors"]][0] == \
        (2, "evidence: written consent needs its evidence")
    with Session(engine) as session:
        assert all(row.evidence for row in session.scalars(select(ConsentRecord))
                   if row.kind == "written")


# --- showing: each consent's seller, evidence and standing now ------------------------------------

def test_consent_show_gives_each_consents_seller_evidence_and_standing(cli, tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(jsonl(
        consent_record(),                                                             # revoked for sms
        consent_record(seller="Beta Energy", channels=["voice"], expires_at="2026-06-01T00:00:00Z"),
        consent_record(seller="Gamma", channels=["voice"], granted_at="2026-02-01T00:00:00Z"),  # superseded
        consent_record(seller="Gamma", channels=["voice"], granted_at="2026-03-01T00:00:00Z",
                       evidence={"certificate_id": "cert-gamma-2"}),                  # active
        {"type": "revocation", "phone": PHONE, "channels": ["sms"], "via": "sms_stop",
         "received_at": "2026-07-10T12:00:00Z"}))
    assert cli("consent", "import", str(path)).exit_code == 0

    shown = cli("consent", "show", PHONE, "--json")

    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert {"phone", "at", "history", "relied_on"} <= set(view)          # the keys of before stay
    standing = {(c["seller"], c["granted_at"]): c for c in view["consents"]}
    acme = standing[("Acme Solar", "2026-01-01T00:00:00Z")]
    assert acme["evidence"] == CERTIFICATE
    assert (acme["status"], acme["in_force_channels"]) == ("revoked", ["voice"])
    assert acme["status_detail"] == ("revoked for sms on 2026-07-10T12:00:00Z via sms_stop; "
                                     "still in force for voice")
    beta = standing[("Beta Energy", "2026-01-01T00:00:00Z")]
    assert (beta["status"], beta["status_detail"]) == ("expired", "expired on 2026-06-01T00:00:00Z")
    old_gamma, new_gamma = standing[("Gamma", "2026-02-01T00:00:00Z")], standing[("Gamma", "2026-03-01T00:00:00Z")]
    assert old_gamma["status"] == "superseded" and f"consent#{new_gamma['id']}" in old_gamma["status_detail"]
    assert (new_gamma["status"], new_gamma["in_force_channels"]) == ("active", ["voice"])
    assert all(item["seller"] for item in view["relied_on"] if item["kind"])

    narrowed = json.loads(cli("consent", "show", PHONE, "--json", "--seller", "beta energy").output)
    assert narrowed["seller"] == "beta energy"
    assert [c["seller"] for c in narrowed["consents"]] == ["Beta Energy"]
    assert all(item["kind"] is None for item in narrowed["relied_on"])   # expired: nothing to rely on

    text = cli("consent", "show", PHONE).output
    assert "Acme Solar" in text and "cert-acme-1" in text and "revoked for sms" in text and "expired on" in text
    assert "consent#4: written, granted 2026-03-01T00:00:00Z, no expiry; seller Gamma" in " ".join(text.split())


def test_the_why_page_shows_each_consents_seller_evidence_and_standing(outbound_env):
    from api.app import create_app
    from outbound.db import get_engine
    from pages_support import sign_in

    engine = get_engine()
    ensure_schema(engine)
    now = datetime.now(timezone.utc)
    with session_scope(engine) as session:
        for overrides in ({"seller": "Acme Solar", "evidence": {"certificate_id": "cert-why-1"}},
                          {"seller": "Beta Energy", "expires_at": (now - timedelta(days=3)).isoformat()}):
            records.add_consent(session, ConsentIn.model_validate(consent_record(
                granted_at=(now - timedelta(days=30)).isoformat(), **overrides)),
                actor="test", at=now - timedelta(days=30), audit=audit.append)
        records.revoke(session, PHONE, {Channel.VOICE, Channel.SMS}, "sms_stop", now - timedelta(days=2),
                       actor="test", at=now - timedelta(days=2), audit=audit.append)
    with TestClient(create_app()) as client:
        compliance = sign_in(client, engine, "carol", "compliance")
        page = compliance.client.get(f"/compliance/why?phone={PHONE}").text
    rows = page.split('<table id="consents">', 1)[1].split("</table>", 1)[0]
    acme, beta = rows.split('<tr id="consent-')[1:]
    assert '<td class="seller">Acme Solar</td>' in acme and "cert-why-1" in acme
    assert ">revoked</span>" in acme and "revoked for voice on" in acme
    assert '<td class="seller">Beta Energy</td>' in beta and ">expired</span>" in beta


# --- campaigns name their seller ---------------------------------------------------------------

def test_campaign_create_and_update_take_the_seller(cli):
    created = cli("campaign", "create", "spring", "--channel", "sms", "--purpose", "telemarketing",
                  "--caller-id", "+12125550100", "--script", "Reply STOP to opt out.", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["seller"] == "spring"                 # default: its name

    updated = cli("campaign", "update", "spring", "--seller", "Sunrise Solar", "--json")
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.output)["seller"] == "Sunrise Solar"

    refused = cli("campaign", "create", "autumn", "--channel", "sms", "--purpose", "telemarketing",
                  "--caller-id", "+12125550100", "--script", "Hi", "--seller", "unknown")
    assert refused.exit_code == 2 and "cannot name a seller" in " ".join(refused.output.split())


# --- migration 0005 ----------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def migrate_with(engine, campaigns: list[tuple[str, dict]]) -> dict[int, str]:
    """Consents stored at 0004 (one without a seller, one with), then upgraded: id -> seller."""
    ensure_schema(engine)
    downgrade_to(engine, "0004")
    with engine.begin() as connection:
        insert_draft_campaigns(connection, campaigns, T0)
        for seller in (None, "Acme Solar"):
            connection.execute(sa.text(
                "INSERT INTO consent_records (phone, kind, channels, purposes, seller, granted_at, evidence, "
                "recorded_at, recorded_by) VALUES (:phone, 'written', 'voice', 'telemarketing', :seller, :at, "
                "'{\"source\": \"old\"}', :at, 'test')"), {"phone": PHONE, "seller": seller, "at": T0})
    ensure_schema(engine)
    with Session(engine) as session:
        return dict(session.execute(select(ConsentRecord.id, ConsentRecord.seller).order_by(ConsentRecord.id)).all())


@pytest.mark.parametrize("campaigns,filled", SELLER_FILLED_BY_MIGRATION)
def test_migration_gives_consents_without_a_seller_one_that_fails_closed(empty_engine, campaigns, filled):
    assert list(migrate_with(empty_engine, campaigns).values()) == [filled, "Acme Solar"]


def test_the_campaign_form_takes_the_seller(outbound_env):
    from api.app import create_app
    from outbound.db import get_engine
    from pages_support import field_error, sign_in

    engine = get_engine()
    ensure_schema(engine)
    form = {"name": "spring", "channel": "sms", "purpose": "telemarketing", "caller_id": "+12125550100",
            "script": "Reply STOP to opt out.", "seller": " Sunrise Solar "}
    with TestClient(create_app()) as client:
        manager = sign_in(client, engine, "mona", "manager")
        assert manager.post("/manager/campaigns", data=form, follow_redirects=False).status_code == 303
        refused = manager.post("/manager/campaigns", data={**form, "name": "autumn", "seller": "unknown"})
    assert refused.status_code == 422 and "cannot name a seller" in field_error(refused.text, "seller")
    with Session(engine) as session:
        assert campaign_seller(find_campaign(session, "spring")) == "Sunrise Solar"


def test_the_api_shows_each_consents_standing_and_narrows_to_a_seller(api):
    for body in (consent_record(), consent_record(seller="Beta Energy", expires_at="2026-06-01T00:00:00Z")):
        assert api.post("/v1/consent", json={k: v for k, v in body.items() if k != "type"}).status_code == 201

    view = api.get(f"/v1/consent/{PHONE}").json()
    assert {(c["seller"], c["status"]) for c in view["consents"]} == {("Acme Solar", "active"),
                                                                       ("Beta Energy", "expired")}
    narrowed = api.get(f"/v1/consent/{PHONE}", params={"seller": "Beta Energy"}).json()
    assert [c["seller"] for c in narrowed["consents"]] == ["Beta Energy"]
    assert all(item["kind"] is None for item in narrowed["relied_on"])
