"""A business relationship belongs to a seller (47 CFR 64.1200(f)(5)).

An established business relationship (a transaction within 18 months, an inquiry within 3)
exempts a telemarketing call from the national DNC list, but only for the seller the customer
dealt with: another seller's campaign still meets the list. Every relationship names its seller
(file import, API), the engine folds only the campaign's seller's dates into the gate's facts,
and the scenario the gate contract stores keeps its seller-less `ebr`. Migration 0007 gives
relationships recorded without a seller one that fails closed, and audits the rows it fills.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlmodel import Session

from consent import records
from consent.ledger_io import BusinessRelationshipIn, load_json_bytes
from consent.row_digest import stored_digests
from consent.rules import load_pack
from consent.tables import BusinessRelationship
from consent.types import Facts, SellerRelationship
from outbound import agents, audit
from outbound.db import ensure_schema, session_scope
from outbound.migrations import downgrade_to
from scheduler.facts import for_seller, load_batch_facts
from scheduler.simulate import simulate
from dispatch_support import NOON_NEW_YORK, FakeAdapter, FakeRegistry, running_campaign
from consent_support import (
    SELLER_FILLED_BY_MIGRATION, consent_api_client, consent_cli, dispatch_at_noon, insert_draft_campaigns,
    outcome_by_campaign,
)

PACK = load_pack()
PHONE = "+12125550123"
LISTED = FakeRegistry(listed={PHONE})
LAST_MONTH = NOON_NEW_YORK - timedelta(days=30)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def relationship(**overrides) -> dict:
    return {"type": "business_relationship", "phone": PHONE, "seller": "Acme Solar",
            "last_transaction_at": LAST_MONTH.isoformat(), **overrides}


def record_relationship(engine, **overrides) -> None:
    with session_scope(engine) as session:
        records.add_business_relationship(session, BusinessRelationshipIn.model_validate(relationship(**overrides)),
                                          actor="test", at=LAST_MONTH, audit=audit.append)


def seller_campaign(engine, name: str, seller: str) -> int:
    # Live voice to a landline needs no consent: only the national list and an EBR decide. Live
    # telemarketing needs agents to take the answers (the abandoned-call rule).
    with session_scope(engine) as session:
        agents.add_agent(session, f"agent-{name}", f"client:{name}", status="available", actor="test", at=T0)
    return running_campaign(engine, [PHONE], name=name, purpose="telemarketing", voice="live",
                            settings={"conversation": {"seller_name": seller}})


# --- the engine: only the campaign's seller's relationship exempts ------------------------------

def test_one_sellers_business_relationship_does_not_exempt_another_sellers_campaign(sqlite_engine):
    acme = seller_campaign(sqlite_engine, "acme-calls", "Acme Solar")
    beta = seller_campaign(sqlite_engine, "beta-calls", "Beta Energy")
    record_relationship(sqlite_engine, seller="  acme   SOLAR ")        # case and spaces do not matter
    adapter = FakeAdapter()

    report = dispatch_at_noon(sqlite_engine, adapter, pack=PACK, registry=LISTED)

    assert (report.allowed, report.blocked) == (1, 1)
    outcomes = outcome_by_campaign(sqlite_engine, "ebr")
    status, error, ebr = outcomes[beta]
    assert status == "blocked" and "dnc_national" in error
    assert ebr == {"last_transaction_at": None, "last_inquiry_at": None}
    status, error, ebr = outcomes[acme]
    # The stored scenario is the gate contract's: its ebr names no seller.
    assert status == "dialing" and ebr == {"last_transaction_at": "2026-06-15T16:00:00Z", "last_inquiry_at": None}
    assert [request.to for _sid, request in adapter.calls] == [PHONE]


def test_the_dry_run_keeps_only_the_campaigns_sellers_relationship(sqlite_engine):
    seller_campaign(sqlite_engine, "acme-calls", "Acme Solar")
    seller_campaign(sqlite_engine, "beta-calls", "Beta Energy")
    record_relationship(sqlite_engine)

    def run(name):
        return simulate(sqlite_engine, name, start=NOON_NEW_YORK, days=1, pack=PACK, registry=LISTED)

    assert run("beta-calls").blocked_by_reason == {"dnc_national": 1}
    assert run("acme-calls").blocked_by_reason == {}


def test_batch_facts_hold_each_sellers_latest_dates_and_no_date_before_a_seller_is_chosen(sqlite_engine):
    record_relationship(sqlite_engine, last_inquiry_at=(LAST_MONTH - timedelta(days=5)).isoformat())
    record_relationship(sqlite_engine, last_transaction_at=(LAST_MONTH - timedelta(days=400)).isoformat())
    record_relationship(sqlite_engine, seller="Beta Energy", last_transaction_at=None,
                        last_inquiry_at=LAST_MONTH.isoformat())
    record_relationship(sqlite_engine, seller="Beta Energy",                  # after the instant: not yet a fact
                        last_transaction_at=(NOON_NEW_YORK + timedelta(days=1)).isoformat())
    with Session(sqlite_engine) as session:
        facts = load_batch_facts(session, [PHONE], NOON_NEW_YORK, LISTED)[PHONE]

    assert (facts.last_transaction_at, facts.last_inquiry_at) == (None, None)      # fail closed until narrowed
    assert facts.relationships == (
        SellerRelationship("Acme Solar", LAST_MONTH, LAST_MONTH - timedelta(days=5)),
        SellerRelationship("Beta Energy", None, LAST_MONTH))
    beta = for_seller(facts, "beta energy")
    assert (beta.last_transaction_at, beta.last_inquiry_at) == (None, LAST_MONTH)
    assert [r.seller for r in beta.relationships] == ["Beta Energy"]


@pytest.mark.parametrize("relationship_seller,campaign_seller,counts", [
    ("Acme Solar", "Acme Solar", True),
    ("Acme  solar", "ACME SOLAR", True),
    ("Acme Solar", "Beta Energy", False),
    ("unknown", "unknown", False),            # the migration's placeholder matches no campaign
])
def test_for_seller_keeps_only_that_sellers_business_dates(relationship_seller, campaign_seller, counts):
    facts = Facts(relationships=(SellerRelationship(relationship_seller, LAST_MONTH, LAST_MONTH),))
    seen = for_seller(facts, campaign_seller)
    assert (seen.last_transaction_at == LAST_MONTH) is counts and (seen.last_inquiry_at == LAST_MONTH) is counts


# --- recording: a relationship names its seller ---------------------------------------------------

@pytest.fixture
def api(engine, api_users):
    yield from consent_api_client(engine, api_users, NOON_NEW_YORK)


@pytest.fixture
def cli(outbound_env_db, cli_runner, monkeypatch):
    return consent_cli(cli_runner, monkeypatch)


def test_a_ledger_file_refuses_a_business_relationship_without_a_seller_naming_the_line():
    lines = [relationship(), {k: v for k, v in relationship().items() if k != "seller"},
             relationship(seller="unknown"), relationship(seller="  ")]
    loaded = load_json_bytes("\n".join(json.dumps(line) for line in lines).encode())
    assert [row.line for row in loaded.rows] == [1]
    reasons = {error.line: error.reason for error in loaded.errors}
    assert reasons[2] == "seller: required"
    assert "placeholder" in reasons[3] and set(reasons) == {2, 3, 4}


def test_the_api_refuses_a_business_relationship_without_a_seller(api):
    body = {k: v for k, v in relationship().items() if k != "type"}
    missing = api.post("/v1/business-relationships", json={k: v for k, v in body.items() if k != "seller"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "seller"]
    stored = api.post("/v1/business-relationships", json=body)
    assert stored.status_code == 201 and stored.json()["seller"] == "Acme Solar"


def test_consent_show_names_each_business_dates_seller(cli, tmp_path):
    path = tmp_path / "ebr.jsonl"
    path.write_text(json.dumps(relationship()) + "\n")
    assert cli("consent", "import", str(path)).exit_code == 0
    view = json.loads(cli("consent", "show", PHONE, "--json").output)
    [event] = [e for e in view["history"] if e["event"] == "business_transaction"]
    assert event["detail"]["seller"] == "Acme Solar"


# --- migration 0007 ----------------------------------------------------------------------------


def migrate_with(engine, campaigns: list[tuple[str, dict]]) -> dict[int, str]:
    """Relationships stored at 0006 (one without a seller, one with, audited), then upgraded."""
    ensure_schema(engine)
    downgrade_to(engine, "0006")
    with engine.begin() as connection:
        insert_draft_campaigns(connection, campaigns, T0)
    with Session(engine) as session:
        for seller in (None, "Acme Solar"):
            row = BusinessRelationship(phone=PHONE, seller=seller, last_transaction_at=T0, recorded_at=T0)
            session.add(row)
            session.flush()
            audit.append(session, actor="test", action="consent.business_relationship", subject=PHONE, at=T0,
                         payload={"row_digests": stored_digests(session, row)})
        session.commit()
    ensure_schema(engine)
    with Session(engine) as session:
        assert audit.verify(session).ok, audit.verify(session)
        return dict(session.execute(select(BusinessRelationship.id, BusinessRelationship.seller)
                                    .order_by(BusinessRelationship.id)).all())


@pytest.mark.parametrize("campaigns,filled", SELLER_FILLED_BY_MIGRATION)
def test_migration_gives_relationships_without_a_seller_one_that_fails_closed(empty_engine, campaigns, filled):
    assert list(migrate_with(empty_engine, campaigns).values()) == [filled, "Acme Solar"]
    with Session(empty_engine) as session:
        [event] = [e for e in audit.recent_events(session) if e.action == "consent.business_relationship.seller_filled"]
        assert event.actor == "migration 0007"
