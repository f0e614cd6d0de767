"""The main journey of each role, in headless Chromium against the running app:

- manager: upload a list (progress bar, import report), simulate, start, watch live counters move;
- compliance: filter the blocked report, open a "why" page, replay, verify the audit chain;
- agent: receive a transfer card pushed by the server, accept, the live call, a disposition.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from browser_support import SimulatedWorker, copy_sample, sign_in_browser
from outbound import agents, transfers
from outbound.db import session_scope
from pages_support import XSS, offer_transfer

PUSH_TIMEOUT_MS = 20_000


def test_manager_uploads_simulates_starts_and_watches_counters_move(page, live_app, demo_facts, sim_start,
                                                                     screenshot, tmp_path):
    sign_in_browser(page, live_app, "mona", "manager")
    expect(page).to_have_url(live_app.url("/manager"))

    # A form error keeps what was typed and says what to fix next to the field.
    page.fill("#f-name", "spring-solar")
    page.fill("#f-caller_id", "+1212")
    page.fill("#f-hours", "09:00-20:00")
    page.click("#create-campaign button[type=submit]")
    expect(page.locator("#e-caller_id")).to_contain_text("is not a valid E.164 number")
    expect(page.locator("#f-name")).to_have_value("spring-solar")
    screenshot(page, "manager-form-error")
    page.fill("#f-caller_id", "+12125550100")
    page.fill("#f-script", "Hi, this is Ava, an automated assistant calling for Sunrise Solar.")
    page.fill("#f-seller", "Sunrise Solar")           # the seller the bundled consents were given to
    page.click("#create-campaign button[type=submit]")
    expect(page.locator("h1")).to_contain_text("spring-solar")

    # Upload: the progress bar fills, then the import report replaces the form's result area.
    page.set_input_files("#upload-file", str(copy_sample("contacts.csv", tmp_path / "contacts.csv")))
    page.click("#upload-button")
    expect(page.locator("#import-report")).to_contain_text("accepted", timeout=60_000)
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(page.locator("#rejects-csv")).to_be_visible()
    screenshot(page, "manager-upload-report")
    with page.expect_download() as download:
        page.click("#rejects-csv")
    assert download.value.suggested_filename.endswith("-rejects.csv")

    # Simulate: a dry run through the real gate, shown before launch.
    page.fill("#f-start", sim_start.strftime("%Y-%m-%dT%H:%MZ"))
    page.fill("#f-days", "3")
    page.click("#simulate-button")
    expect(page.locator("#simulate-result")).to_be_visible(timeout=60_000)
    assert int(page.inner_text("#sim-allowed")) > 0 and int(page.inner_text("#sim-blocked")) > 0
    screenshot(page, "manager-simulate")

    # Start, then the live panel (pushed over SSE) moves as the worker dispatches.
    with page.expect_navigation():
        page.click("#action-start")
    expect(page.locator("#campaign-status")).to_have_text("running")
    expect(page.locator("#count-allowed")).to_have_text("0")
    pending_before = int(page.inner_text("#attempts-pending"))
    assert pending_before > 900
    with SimulatedWorker(live_app.engine, demo_facts, start=sim_start) as worker:
        expect(page.locator("#count-blocked")).not_to_have_text("0", timeout=PUSH_TIMEOUT_MS)
        expect(page.locator("#count-allowed")).not_to_have_text("0", timeout=PUSH_TIMEOUT_MS)
        expect(page.locator("#answer-rate")).to_have_text(re.compile(r"\d+\.\d%"), timeout=PUSH_TIMEOUT_MS)
        assert worker.error is None, worker.error
    assert int(page.inner_text("#attempts-pending")) < pending_before
    screenshot(page, "manager-live")
    with page.expect_navigation():
        page.click("#action-pause")
    expect(page.locator("#campaign-status")).to_have_text("paused")


def test_compliance_filters_the_report_opens_why_and_verifies_audit(page, live_app, demo_facts, sim_start,
                                                                    screenshot):
    seed_decisions(live_app, demo_facts, sim_start)
    sign_in_browser(page, live_app, "carol", "compliance")
    expect(page.locator("h1")).to_have_text("Blocked and deferred attempts")

    page.select_option("#f-verdict", "block")
    page.click("#apply-filters")
    expect(page).to_have_url(re.compile(r"verdict=block"))
    expect(page.locator("#blocked-chart rect[data-reason=dnc_internal]").first).to_be_attached()
    screenshot(page, "compliance-report", full_page=False)    # the table runs long
    page.fill("#f-reason", "dnc_internal")
    page.click("#apply-filters")
    expect(page).to_have_url(re.compile(r"reason=dnc_internal"))
    rows = page.locator("#report-rows tbody tr")
    expect(rows.first).to_contain_text("dnc_internal")
    assert all("dnc_internal" in text for text in rows.all_inner_texts())
    expect(page.locator("#f-reason")).to_have_value("dnc_internal")

    # A filter that cannot be used says why, next to the field, and keeps the input.
    page.fill("#f-state", "Florida")
    page.click("#apply-filters")
    expect(page.locator("#e-state")).to_contain_text("two-letter code")
    expect(page.locator("#f-state")).to_have_value("Florida")
    page.fill("#f-state", "")
    page.click("#apply-filters")

    page.locator("#report-rows a.why-link").first.click()
    expect(page.locator("h1")).to_contain_text("Why")
    decision = page.locator("section.decision").first
    expect(decision).to_contain_text("dnc_internal")
    expect(decision).to_contain_text("rules")
    decision.locator("button.replay-button").click()
    expect(decision.locator(".replay-result")).to_contain_text("byte-identical")
    screenshot(page, "compliance-why")

    page.click("header.top >> text=DNC")
    expect(page.locator("#dnc-sources")).to_contain_text("national")
    screenshot(page, "compliance-dnc")

    page.click("header.top >> text=Audit")
    page.click("#verify-audit")
    expect(page.locator("#verify-outcome")).to_contain_text("Chain intact")
    screenshot(page, "compliance-audit")


def test_agent_receives_the_card_accepts_and_gives_a_disposition(page, live_app, screenshot):
    at = datetime.now(timezone.utc)
    with session_scope(live_app.engine) as session:
        agent = agents.add_agent(session, "alice", "client:alice", actor="test", at=at)
        agents.set_status(session, agent, "available", actor="test", at=at)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in_browser(page, live_app, "alice", "agent")
    expect(page.locator("#agent-status")).to_have_text("available")
    expect(page.locator("#waiting")).to_be_visible()
    page.wait_for_timeout(500)              # the console's SSE stream is connected

    # The offer is pushed: no reload, the card appears with the caller escaped.
    transfer_id = offer_transfer(live_app.engine, first_name=XSS)
    expect(page.locator("#offer-title")).to_contain_text(XSS, timeout=PUSH_TIMEOUT_MS)
    expect(page.locator("#agent-status")).to_have_text("busy")
    expect(page.locator("#context-card")).to_contain_text("Consent basis")
    assert dialogs == []                                   # the caller's "name" never ran
    screenshot(page, "agent-offer")

    page.click("#accept")
    expect(page.locator("#accepted")).to_be_visible()

    # The carrier reports the agent's leg joined the conference, later the call ended.
    with session_scope(live_app.engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "participant-join",
                                                                 "CallSid": "CAagentleg"},
                                          at=datetime.now(timezone.utc))
    expect(page.locator("#live-call")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    screenshot(page, "agent-live-call")
    with session_scope(live_app.engine) as session:
        transfers.handle_conference_event(session, transfer_id, {"StatusCallbackEvent": "conference-end"},
                                          at=datetime.now(timezone.utc) + timedelta(seconds=90))
    expect(page.locator("#disposition-form")).to_be_visible(timeout=PUSH_TIMEOUT_MS)
    expect(page.locator("#agent-status")).to_have_text("wrap-up")

    page.fill("#f-note", "wants a quote for 12 panels")
    page.click("#save-disposition")                       # no disposition chosen
    expect(page.locator("#e-outcome")).to_contain_text("choose one: sale, interested")
    expect(page.locator("#f-note")).to_have_value("wants a quote for 12 panels")
    screenshot(page, "agent-disposition")
    page.select_option("#f-outcome", "interested")
    page.click("#save-disposition")
    expect(page.locator("#disposition-saved")).to_contain_text("interested")
    expect(page.locator("#agent-status")).to_have_text("available")


def test_login_page_and_escaping_of_a_hostile_contact_name(page, live_app, screenshot):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(live_app.url("/manager"))
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fmanager"))
    screenshot(page, "login")
    sign_in_browser(page, live_app, "mallory-manager", "manager")
    page.fill("#f-name", XSS)
    page.fill("#f-caller_id", "+12125550100")
    page.click("#create-campaign button[type=submit]")
    expect(page.locator("h1")).to_contain_text(XSS)            # shown as text
    page.goto(live_app.url("/manager"))
    expect(page.locator("#campaigns")).to_contain_text(XSS)
    assert dialogs == []                                       # the script never ran


def seed_decisions(live_app, registry, start: datetime) -> None:
    """A campaign over the sample list (20 calls a second), dispatched on simulated time over a
    few days, until the gate has blocked a number on the internal DNC list."""
    from sqlalchemy import select
    from sqlmodel import Session

    from outbound.campaigns import create_campaign, find_campaign, start_campaign, validate_campaign
    from outbound.demo import DEMO_CAMPAIGN, sample_path
    from outbound.lists.importer import import_contacts, open_list
    from outbound.models import Decision

    with session_scope(live_app.engine) as session:
        campaign_id = create_campaign(session, validate_campaign({"name": "seeded", **DEMO_CAMPAIGN}),
                                      actor="test", at=start).id
    with sample_path("contacts.csv").open("rb") as stream:
        reader, columns = open_list(stream)
        import_contacts(live_app.engine, reader, columns, campaign_id=campaign_id, file_name="contacts.csv",
                        actor="test", at=start)
    with session_scope(live_app.engine) as session:
        start_campaign(session, find_campaign(session, campaign_id), actor="test", at=start)
    # Ticks six hours apart: the report's chart then spans several days.
    worker = SimulatedWorker(live_app.engine, registry, start=start, step=timedelta(hours=6))
    for tick in range(60):
        worker.tick()
        with Session(live_app.engine) as session:
            found = session.execute(select(Decision.id).where(Decision.verdict == "block", Decision.decision.like(
                '%"code":"dnc_internal"%')).limit(1)).first()
        if found and tick >= 12:
            return
    raise AssertionError("no dnc_internal block after 60 dispatch ticks")


def test_oversized_upload_is_refused_in_the_page_with_the_limit(page, live_app, monkeypatch, tmp_path):
    monkeypatch.setenv("OUTBOUND_MAX_LIST_BYTES", "2048")       # the server runs in this process
    sign_in_browser(page, live_app, "mona", "manager")
    page.fill("#f-name", "too-big")
    page.fill("#f-caller_id", "+12125550100")
    page.click("#create-campaign button[type=submit]")
    big = tmp_path / "big.csv"
    big.write_text("phone\n" + "(212) 555-0123\n" * 1000)
    page.set_input_files("#upload-file", str(big))
    page.click("#upload-button")
    expect(page.locator("#upload-error")).to_contain_text("over the limit of 2,048 bytes")
