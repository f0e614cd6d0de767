"""outbound.reports: blocked and deferred decisions filtered by campaign, reason, state, time and
owner; counts, the chart's series and a CSV that no spreadsheet runs as formulas."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from outbound.models import Campaign
from outbound.reports import (
    ReportFilter, ReportFilterError, decisions_for_phone, iter_report, iter_report_csv, reasons_over_time,
    report_page, summarize,
)
from outbound.users import add_user
from tests.report_support import T0, add_campaign, add_decision, reason

NY, FL = "+12125550123", "+13055550100"


@pytest.fixture
def stored(session):
    spring = add_campaign(session, "spring", owner_id=None)
    autumn = add_campaign(session, "autumn", owner_id=None)
    add_decision(session, spring, NY, "block", [reason("dnc_national")], at=T0)
    add_decision(session, spring, FL, "defer", [reason("calling_window"), reason("holiday")],
                 at=T0 + timedelta(days=1), state="FL")
    add_decision(session, autumn, NY, "block", [reason("dnc_internal", "=HYPERLINK(\"x\")")],
                 at=T0 + timedelta(days=1, hours=1))
    add_decision(session, autumn, FL, "allow", [], at=T0 + timedelta(days=2), state="FL")
    add_decision(session, None, NY, "block", [reason("dnc_national")], at=T0 + timedelta(days=3))   # no campaign
    session.flush()
    return {"spring": spring.id, "autumn": autumn.id}


def codes(rows) -> list[tuple[str, str]]:
    return [(row.verdict, " ".join(row.reason_codes)) for row in rows]


def test_the_default_report_is_blocked_and_deferred_newest_first(session, stored):
    assert codes(iter_report(session, ReportFilter())) == [
        ("block", "dnc_national"), ("block", "dnc_internal"), ("defer", "calling_window holiday"),
        ("block", "dnc_national")]


@pytest.mark.parametrize("filters,expected", [
    (dict(reason="dnc_national"), [("block", "dnc_national"), ("block", "dnc_national")]),
    (dict(reason="holiday"), [("defer", "calling_window holiday")]),
    (dict(reason="dnc"), []),                                       # a code, not a prefix
    (dict(state="FL"), [("defer", "calling_window holiday")]),
    (dict(verdicts=("allow",)), [("allow", "")]),
    (dict(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2)),
     [("block", "dnc_internal"), ("defer", "calling_window holiday")]),
])
def test_filters(session, stored, filters, expected):
    assert codes(iter_report(session, ReportFilter(**filters))) == expected


def test_campaign_and_owner_filters(session, stored):
    assert codes(iter_report(session, ReportFilter(campaign_id=stored["autumn"]))) == [("block", "dnc_internal")]
    manager = add_user(session, "mia", "manager", password=None, actor="test", at=T0)
    session.get(Campaign, stored["spring"]).owner_id = manager.id
    session.flush()
    mine = list(iter_report(session, ReportFilter(owner_id=manager.id)))
    assert {row.campaign for row in mine} == {"spring"} and len(mine) == 2


def test_paging(session, stored):
    first, second = (report_page(session, ReportFilter(), limit=2, offset=offset) for offset in (0, 2))
    assert len(first) == len(second) == 2
    assert {row.decision_id for row in first}.isdisjoint(row.decision_id for row in second)


@pytest.mark.parametrize("filters,message", [
    (dict(reason="DNC; drop"), "reason: a reason code"),
    (dict(state="Florida"), "state: a two-letter code"),
    (dict(verdicts=("maybe",)), "verdict: one or more of allow, defer, block"),
    (dict(since=T0.replace(tzinfo=None)), "since: give a time zone"),
    (dict(since=T0, until=T0), "until: must be after since"),
])
def test_unusable_filters_name_the_field(filters, message):
    with pytest.raises(ReportFilterError, match=message):
        ReportFilter(**filters)


def test_summary_counts_each_reason_of_a_decision_once(session, stored):
    summary = summarize(session, ReportFilter()).to_dict()
    assert summary["total"] == 4
    assert summary["by_verdict"] == {"block": 3, "defer": 1}
    assert summary["by_reason"] == {"calling_window": {"defer": 1}, "dnc_internal": {"block": 1},
                                    "dnc_national": {"block": 2}, "holiday": {"defer": 1}}
    assert summary["by_state"] == {"NY": 3, "FL": 1}
    assert summary["by_campaign"] == {"spring": 2, "autumn": 1, "none": 1}


def test_reasons_over_time_is_per_utc_day_oldest_first(session, stored):
    assert reasons_over_time(session, ReportFilter(verdicts=("block",))) == [
        {"day": "2026-07-15", "reason": "dnc_national", "count": 1},
        {"day": "2026-07-16", "reason": "dnc_internal", "count": 1},
        {"day": "2026-07-18", "reason": "dnc_national", "count": 1}]


def test_csv_is_safe_from_formula_injection(session, stored):
    rows = list(csv.DictReader(io.StringIO("".join(iter_report_csv(session, ReportFilter())))))
    assert len(rows) == 4
    internal = next(row for row in rows if row["reasons"] == "dnc_internal")
    assert internal["details"].startswith("'=HYPERLINK")          # shown as text, never run
    assert internal["phone"] == "'+12125550123"                     # `+` starts a formula too
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@")) for value in row.values())


def test_decisions_for_phone_lists_every_verdict(session, stored):
    assert [row.verdict for row in decisions_for_phone(session, FL)] == ["allow", "defer"]
