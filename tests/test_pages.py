"""The web pages, through the app (no browser): roles, forms that re-show input with a message
next to the field, upload limits, escaping, CSRF, the report filters, chart and CSV, "why" with
replay, audit verification, the agent console and the live SSE panel."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api.app import create_app
from api.pages.campaign_live import live_counters
from api.pages.sse import sse_event
from api.pages.svg_chart import blocked_by_reason_svg
from consent.rules import load_pack
from consent.tables import DncEntry
from outbound import agents, audit, transfers
from outbound.db import ensure_schema, get_engine, session_scope
from outbound.models import Attempt, AuditEvent, Campaign, Contact, Decision
from pages_support import PASSWORD, XSS, field_error, offer_transfer, sign_in

CAMPAIGN_FORM = {"name": "spring", "channel": "voice", "purpose": "telemarketing", "voice": "artificial",
                 "automated": "on", "caller_id": "+12125550100", "hours": "09:00-20:00"}


@pytest.fixture
def engine(outbound_env):
    engine = get_engine()
    ensure_schema(engine)
    return engine


@pytest.fixture
def client(engine):
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def manager(client, engine):
    return sign_in(client, engine, "mona", "manager")


def make_campaign(manager, **changes) -> int:
    response = manager.post("/manager/campaigns", data={**CAMPAIGN_FORM, **changes}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def upload(manager, campaign_id: int, content: bytes, name: str = "list.csv"):
    return manager.post(f"/manager/campaigns/{campaign_id}/lists", files={"file": (name, content, "text/csv")},
                        headers={"HX-Request": "true"})


# --- access -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/manager", "/compliance", "/compliance/why", "/compliance/dnc",
                                  "/compliance/audit", "/agent"])
def test_anonymous_browser_is_sent_to_login_and_back(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + path.replace("/", "%2F")


@pytest.mark.parametrize("role,path", [("agent", "/manager"), ("manager", "/compliance"),
                                       ("compliance", "/agent"), ("admin", "/compliance/why")])
def test_wrong_role_gets_a_403_page(client, engine, role, path):
    sign_in(client, engine, f"someone-{role}", role)
    response = client.get(path)
    assert response.status_code == 403
    assert "may not do this" in response.text and "<h1>Not allowed</h1>" in response.text


def test_login_form_leads_to_the_role_home(client, engine):
    from pages_support import ensure_user
    ensure_user(engine, "carol", "compliance")
    form = client.get("/login?next=/compliance/dnc")
    token = form.text.split('name="form_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"name": "carol", "password": PASSWORD, "form_token": token,
                                           "next": "/compliance/dnc"}, follow_redirects=False)
    assert response.headers["location"] == "/compliance/dnc"
    assert client.get("/", follow_redirects=False).headers["location"] == "/compliance"


def test_a_write_without_the_csrf_token_is_refused(client, manager):
    response = client.post("/manager/campaigns", data=CAMPAIGN_FORM)       # no header, no field
    assert response.status_code == 403
    assert "CSRF token missing or wrong" in response.text
    # The same form with the hidden field the page renders is accepted.
    page = client.get("/manager").text
    form = page.split('<form class="stack" id="create-campaign"')[1]
    hidden = form.split('name="csrf_token" value="')[1].split('"')[0]
    assert hidden == manager.csrf
    accepted = client.post("/manager/campaigns", data={**CAMPAIGN_FORM, "csrf_token": hidden},
                           follow_redirects=False)
    assert accepted.status_code == 303


def test_static_files_are_served_and_cannot_escape_their_folder(client):
    assert client.get("/static/vendor/htmx-2.0.11.min.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/vendor/htmx-ext-sse-2.2.4.js").status_code == 200
    assert client.get("/static/..%2Fpages%2Faccess.py").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


# --- manager ------------------------------------------------------------------------------------------

def test_campaign_form_reshows_input_with_the_message_next_to_the_field(manager):
    response = manager.post("/manager/campaigns", data={**CAMPAIGN_FORM, "caller_id": "+1212", "name": "summer"})
    assert response.status_code == 422
    assert "is not a valid E.164 number" in field_error(response.text, "caller_id")
    assert 'value="+1212"' in response.text and 'value="summer"' in response.text
    hours = manager.post("/manager/campaigns", data={**CAMPAIGN_FORM, "hours": "22:00-23:00"})
    assert "outside the federal calling window" in field_error(hours.text, "hours")
    assert 'value="22:00-23:00"' in hours.text


def test_campaign_name_taken_is_reported_on_the_name(manager):
    make_campaign(manager)
    response = manager.post("/manager/campaigns", data=CAMPAIGN_FORM)
    assert "already exists" in field_error(response.text, "name")


def test_upload_shows_the_import_report_and_rejects_download_safely(manager, engine):
    campaign_id = make_campaign(manager)
    content = b"phone,first_name\n(212) 555-0123,Ann\n=HYPERLINK(1),Evil\n(305) 555-0100,Bo\n"
    response = upload(manager, campaign_id, content)
    assert response.status_code == 200
    assert "2 accepted" in response.text and "1 rejected" in response.text
    import_id = int(response.text.split("/manager/imports/")[1].split("/")[0])
    rejects = manager.client.get(f"/manager/imports/{import_id}/rejects.csv")
    rows = list(csv.reader(io.StringIO(rejects.text)))
    assert rows[1][rows[0].index("phone")] == "'=HYPERLINK(1)"       # shown as text, never a formula
    report = manager.client.get(f"/manager/imports/{import_id}")
    assert report.status_code == 200 and "Rejected rows" in report.text


def test_oversized_upload_is_refused_with_the_limit_stated(manager, monkeypatch):
    campaign_id = make_campaign(manager)
    monkeypatch.setenv("OUTBOUND_MAX_LIST_BYTES", "1024")
    assert "up to 1 KB" in manager.client.get(f"/manager/campaigns/{campaign_id}").text
    response = upload(manager, campaign_id, b"phone\n" + b"(212) 555-0123\n" * 200)
    assert response.status_code == 413
    assert "over the limit of 1,024 bytes" in response.text


def test_a_file_over_the_limit_that_slips_past_the_body_check_is_refused_by_the_page(manager, monkeypatch):
    campaign_id = make_campaign(manager)
    monkeypatch.setenv("OUTBOUND_MAX_LIST_BYTES", "1024")    # the body is within the multipart slack
    response = upload(manager, campaign_id, b"phone\n" + b"(212) 555-0123\n" * 100)
    assert response.status_code == 413
    assert "file: the file is 1,506 bytes, over the limit of 1,024 bytes" in response.text


def test_a_file_without_a_phone_column_says_which_columns_it_found(manager):
    campaign_id = make_campaign(manager)
    response = upload(manager, campaign_id, b"name,city\nAnn,Boston\n")
    assert response.status_code == 422
    assert "columns found: name, city" in response.text


def test_a_contact_named_script_renders_escaped_everywhere(manager, engine):
    campaign_id = make_campaign(manager, name=XSS)
    content = f"phone,first_name,last_name\n(212) 555-0123,{XSS},x\nnot-a-phone,{XSS},y\n".encode()
    report = upload(manager, campaign_id, content)
    import_id = int(report.text.split("/manager/imports/")[1].split("/")[0])
    for page in (manager.client.get("/manager"), manager.client.get(f"/manager/campaigns/{campaign_id}"),
                 manager.client.get(f"/manager/imports/{import_id}")):
        assert XSS not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_simulate_shows_the_dry_run_and_field_errors(manager):
    campaign_id = make_campaign(manager)
    upload(manager, campaign_id, b"phone,zip\n(212) 555-0123,10001\n(305) 555-0100,33101\n")
    result = manager.post(f"/manager/campaigns/{campaign_id}/simulate",
                          data={"start": "2026-11-23T14:00Z", "days": "2"})
    assert result.status_code == 200
    assert 'id="sim-allowed"' in result.text and "List exhausted at" in result.text
    bad = manager.post(f"/manager/campaigns/{campaign_id}/simulate", data={"start": "monday", "days": "999"})
    assert bad.status_code == 422
    assert "is not an instant with a zone" in field_error(bad.text, "start")
    assert "from 1 to 366" in field_error(bad.text, "days")
    assert 'value="monday"' in bad.text


def test_start_and_pause_are_audited_with_the_manager_as_actor(manager, engine):
    campaign_id = make_campaign(manager)
    upload(manager, campaign_id, b"phone\n(212) 555-0123\n")
    assert manager.post(f"/manager/campaigns/{campaign_id}/start", follow_redirects=False).status_code == 303
    assert manager.post(f"/manager/campaigns/{campaign_id}/pause", follow_redirects=False).status_code == 303
    resume_twice = manager.post(f"/manager/campaigns/{campaign_id}/start")
    assert resume_twice.status_code == 409 and "use resume" in resume_twice.text
    with Session(engine) as session:
        actions = session.execute(select(AuditEvent.action, AuditEvent.actor).where(
            AuditEvent.subject == f"campaign:{campaign_id}")).all()
    assert sorted(actions) == [("campaign.created", "mona"), ("campaign.paused", "mona"),
                               ("campaign.running", "mona"), ("contacts.imported", "mona")]


def test_another_managers_campaign_is_not_found(client, engine, manager):
    campaign_id = make_campaign(manager)
    other = sign_in(TestClient(create_app()), engine, "otto", "manager")
    assert other.client.get(f"/manager/campaigns/{campaign_id}").status_code == 404
    assert other.post(f"/manager/campaigns/{campaign_id}/start").status_code == 404


def test_live_counters_count_attempts_and_verdicts(manager, engine):
    campaign_id = make_campaign(manager)
    upload(manager, campaign_id, b"phone\n(212) 555-0123\n(212) 555-0124\n")
    manager.post(f"/manager/campaigns/{campaign_id}/start")
    with Session(engine) as session:
        counters = live_counters(session, campaign_id, datetime.now(timezone.utc))
    assert counters.attempts["pending"] == 2 and counters.allowed == 0 and counters.answer_rate is None


def test_sse_event_frames_every_line_of_the_fragment():
    assert sse_event("counters", "<b>1</b>\n<i>2</i>") == "event: counters\ndata: <b>1</b>\ndata: <i>2</i>\n\n"


# --- compliance ---------------------------------------------------------------------------------------

@pytest.fixture
def decided(engine):
    """Stored decisions of a campaign's two contacts: one on the internal DNC list; no national data."""
    from consent import dnc
    from consent.registry_store import RegistryStore
    from outbound.settings import get_settings
    from scheduler.dispatch import DispatchConfig, dispatch_once
    from telephony.simulator import SimulatorAdapter

    at = datetime(2026, 7, 15, 16, 0, tzinfo=timezone.utc)     # 12:00 in New York
    with session_scope(engine) as session:
        # An AI-voice campaign: dispatch paces live-voice (agent) campaigns by free agents.
        campaign = Campaign(name="audit-me", status="running", channel="voice", purpose="telemarketing",
                            voice="artificial", automated=True, caller_id="+12125550100", settings={},
                            created_at=at, updated_at=at)
        session.add(campaign)
        session.flush()
        for phone, first in (("+12125550123", XSS), ("+12125550124", "Bo")):
            contact = Contact(campaign_id=campaign.id, e164=phone, phone_raw=phone, first_name=first, zip="10001",
                              state="NY", line_type="landline", timezones="America/New_York", states="NY",
                              created_at=at)
            session.add(contact)
            session.flush()
            session.add(Attempt(campaign_id=campaign.id, contact_id=contact.id, channel="voice", due_at=at,
                                created_at=at, updated_at=at))
        dnc.add_internal(session, "+12125550123", reason="asked", actor="test", at=at, audit=audit.append)
        for version, loaded in (("nat-0714", at - timedelta(days=1)), ("nat-0716", at + timedelta(days=1))):
            dnc.record_national_load(session, kind="national", version=version, files=[], entries=0,
                                     synced_at=loaded, at=loaded, actor="test", audit=audit.append)
        campaign_id = campaign.id
    registry = RegistryStore(get_settings().data_dir / "registry")
    dispatch_once(engine, SimulatorAdapter(1, lambda *a: None, clock=lambda: at), worker_id="t", now=at,
                  pack=load_pack(), registry=registry, config=DispatchConfig(), sleep=lambda _s: None,
                  monotonic=lambda: at.timestamp())
    return campaign_id


@pytest.fixture
def compliance(client, engine):
    return sign_in(client, engine, "carol", "compliance")


def test_report_filters_table_chart_and_csv(compliance, decided):
    page = compliance.client.get(f"/compliance?campaign={decided}&verdict=block&reason=dnc_internal")
    assert page.status_code == 200
    assert 'id="blocked-chart"' in page.text and 'data-reason="dnc_internal"' in page.text
    assert "+12125550123" in page.text
    exported = compliance.client.get(f"/compliance/report.csv?campaign={decided}&verdict=block")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    # No national registry is loaded and no consent: both are blocked for stale data and missing
    # consent, one also as internal DNC.
    assert sorted((row["phone"], row["reasons"]) for row in rows) == [
        ("'+12125550123", "dnc_internal dnc_data_stale consent_missing"),
        ("'+12125550124", "dnc_data_stale consent_missing")]
    none = compliance.client.get(f"/compliance?campaign={decided}&reason=holiday")
    assert "Nothing matches these filters." in none.text


def test_report_filter_errors_are_shown_next_to_the_field(compliance):
    page = compliance.client.get("/compliance?state=Florida&since=yesterday")
    assert page.status_code == 422
    assert "is not a date" in field_error(page.text, "since")
    assert 'value="Florida"' in page.text


def test_report_csv_cells_cannot_run_as_formulas(compliance, engine, decided):
    with session_scope(engine) as session:
        session.execute(Campaign.__table__.update().values(name="=cmd|' /C calc'!A0"))
    exported = compliance.client.get("/compliance/report.csv")
    assert "'=cmd|" in exported.text and ",=cmd|" not in exported.text


def test_why_page_shows_reasons_rule_version_dnc_and_replays(compliance, engine, decided):
    page = compliance.client.get("/compliance/why?phone=(212) 555-0123")
    assert page.status_code == 200
    assert "dnc_internal" in page.text and "rules <code" in page.text and "internal</th><td>listed" in page.text
    # The registry version in force when it was decided, not the one loaded a day later.
    assert "<code>nat-0714</code>" in page.text and "<code>nat-0716</code>" not in page.text
    with Session(engine) as session:
        decision_id = session.execute(select(Decision.id).where(Decision.phone == "+12125550123")).scalar_one()
    replayed = compliance.post(f"/compliance/decisions/{decision_id}/replay")
    assert "byte-identical" in replayed.text
    assert compliance.post("/compliance/decisions/nope/replay").status_code == 404
    bad = compliance.client.get("/compliance/why?phone=12")
    assert bad.status_code == 422 and field_error(bad.text, "phone")


def test_audit_verification_reports_intact_then_broken(compliance, engine, decided):
    assert "Chain intact" in compliance.post("/compliance/audit/verify").text
    with session_scope(engine) as session:
        session.execute(AuditEvent.__table__.update().where(AuditEvent.id == 2).values(actor="mallory"))
    broken = compliance.post("/compliance/audit/verify").text
    assert "Chain broken at event #2" in broken


def test_audit_verification_lists_a_dnc_row_changed_outside_the_audit(compliance, engine, decided):
    assert "all match" in compliance.post("/compliance/audit/verify").text
    with session_scope(engine) as session:
        session.execute(DncEntry.__table__.delete().where(DncEntry.phone == "+12125550123"))
    page = compliance.post("/compliance/audit/verify").text
    assert "row(s) changed outside the audit" in page and 'id="verify-row-problems"' in page
    assert "<td>dnc_entries</td>" in page and "<td>removed</td>" in page


def test_dnc_status_page_flags_missing_national_data(compliance):
    page = compliance.client.get("/compliance/dnc")
    assert page.status_code == 200 and "national" in page.text and "stale" in page.text


def test_chart_escapes_reason_labels():
    svg = blocked_by_reason_svg([{"day": "2026-07-15", "reason": "<b>x</b>", "count": 2}])
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg


# --- agent ------------------------------------------------------------------------------------------

@pytest.fixture
def agent(client, engine):
    signed = sign_in(client, engine, "alice", "agent")
    with session_scope(engine) as session:
        agent = agents.add_agent(session, "alice", "client:alice", actor="test", at=datetime.now(timezone.utc))
        agents.set_status(session, agent, "available", actor="test", at=datetime.now(timezone.utc))
    return signed


def test_agent_console_offer_accept_live_call_and_disposition(agent, engine):
    assert "Waiting for a transfer" in agent.client.get("/agent").text
    transfer_id = offer_transfer(engine)
    console = agent.client.get("/agent").text
    assert "Incoming transfer" in console and XSS not in console and "&lt;script&gt;" in console
    accepted = agent.post(f"/agent/transfers/{transfer_id}/accept").text
    assert 'id="accepted"' in accepted
    now = datetime.now(timezone.utc)
    with session_scope(engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "participant-join",
                                                                 "CallSid": "CAagent"}, at=now)
    assert 'id="live-call"' in agent.client.get("/agent").text
    with session_scope(engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "conference-end"},
                                          at=now + timedelta(minutes=2))
    wrap_up = agent.client.get("/agent").text
    assert 'id="disposition-form"' in wrap_up and "wrap-up" in wrap_up
    missing = agent.post(f"/agent/transfers/{transfer_id}/disposition", data={"outcome": "", "note": "called back"})
    assert missing.status_code == 422 and "choose one: sale, interested" in field_error(missing.text, "outcome")
    assert "called back" in missing.text
    saved = agent.post(f"/agent/transfers/{transfer_id}/disposition", data={"outcome": "interested", "note": "ok"})
    assert 'id="disposition-saved"' in saved.text and ">available<" in saved.text


def test_agent_cannot_act_on_someone_elses_transfer(agent, client, engine):
    transfer_id = offer_transfer(engine)
    bob = sign_in(TestClient(create_app()), engine, "bob", "agent")
    assert bob.post(f"/agent/transfers/{transfer_id}/accept").status_code == 404


def test_declining_passes_the_offer_on_and_frees_the_agent(agent, engine):
    transfer_id = offer_transfer(engine)
    panel = agent.post(f"/agent/transfers/{transfer_id}/decline").text
    assert 'id="offer-title"' not in panel and ">available<" in panel
    assert agent.post(f"/agent/transfers/{transfer_id}/accept").status_code == 409


def test_the_live_stream_sends_a_fragment_only_when_it_changes():
    import asyncio

    from api.pages.sse import poll_changes

    class Browser:
        polls = 0

        async def is_disconnected(self) -> bool:
            self.polls += 1
            return self.polls > 4

    fragments = iter(["<b>1</b>", "<b>1</b>", "<b>2</b>", "<b>2</b>"])

    async def collect() -> list[str]:
        return [event async for event in poll_changes(Browser(), "counters", lambda: next(fragments), interval=0)]

    assert asyncio.run(collect()) == ["event: counters\ndata: <b>1</b>\n\n", "event: counters\ndata: <b>2</b>\n\n"]


def test_transfer_policy_is_saved_and_bad_values_are_named(manager, engine):
    campaign_id = make_campaign(manager)
    page = manager.client.get(f"/manager/campaigns/{campaign_id}").text
    assert 'id="f-wait_seconds"' in page
    bad = manager.post(f"/manager/campaigns/{campaign_id}/transfer-policy",
                       data={"wait_seconds": "2", "callback_delay_seconds": "soon"})
    assert bad.status_code == 422
    assert "not a whole number of seconds" in field_error(bad.text, "callback_delay_seconds")
    too_short = manager.post(f"/manager/campaigns/{campaign_id}/transfer-policy", data={"wait_seconds": "2"})
    assert "between 5 and 600" in field_error(too_short.text, "wait_seconds") and 'value="2"' in too_short.text
    saved = manager.post(f"/manager/campaigns/{campaign_id}/transfer-policy",
                         data={"wait_seconds": "30", "callback_delay_seconds": "7200"})
    assert 'id="transfer-policy-saved"' in saved.text
    with Session(engine) as session:
        assert transfers.policy_for(session, campaign_id) == transfers.Policy(30, 7200)


def test_an_agent_user_without_an_agent_record_is_told_how_to_fix_it(client, engine):
    bob = sign_in(client, engine, "bob", "agent")
    assert "outbound agent add bob --reach client:bob" in bob.client.get("/agent").text
    assert bob.client.get("/agent/events").status_code == 404


def test_an_unknown_disposition_is_named(agent, engine):
    transfer_id = offer_transfer(engine)
    agent.post(f"/agent/transfers/{transfer_id}/accept")
    now = datetime.now(timezone.utc)
    with session_scope(engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "participant-join",
                                                                 "CallSid": "CAagent"}, at=now)
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "conference-end"}, at=now)
    wrong = agent.post(f"/agent/transfers/{transfer_id}/disposition", data={"outcome": "maybe"})
    assert wrong.status_code == 422
    assert "&#39;maybe&#39; is not one of sale" in field_error(wrong.text, "outcome")
