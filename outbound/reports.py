"""Compliance reports: blocked and deferred decisions by reason, state, campaign and time.

One filter (`ReportFilter`) serves the REST routes, the pages and the CSV export, so a filtered
table, its chart and its download always agree. Campaign, verdict and date range are filtered in
SQL; reason and state sit inside the stored decision JSON and are checked on each streamed row
(after a LIKE prefilter for the reason), so memory stays flat on a large history.

A manager's report is the same report restricted to the campaigns they own (`owner_id`).
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from outbound.audit import iso_utc
from outbound.lists.report import safe_cell
from outbound.models import Attempt, Campaign, Contact, Decision

REPORT_VERDICTS = ("block", "defer")
ALL_VERDICTS = ("allow", "defer", "block")
REASON_PATTERN = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
STATE_PATTERN = re.compile(r"^[A-Z]{2}$")
_STREAM_ROWS = 2_000
CSV_COLUMNS = ("decided_at", "verdict", "reasons", "phone", "state", "campaign_id", "campaign",
               "attempt_id", "rules_version", "next_allowed_at", "decision_id", "details")


class ReportFilterError(ValueError):
    """A filter value that cannot be used; the message names the field."""


@dataclass(frozen=True)
class ReportFilter:
    campaign_id: int | None = None
    reason: str | None = None               # a reason code, e.g. dnc_national, calling_window
    state: str | None = None                # two-letter state code
    verdicts: tuple[str, ...] = REPORT_VERDICTS
    since: datetime | None = None           # decided_at >= since (UTC)
    until: datetime | None = None           # decided_at < until (UTC)
    owner_id: int | None = None             # only campaigns this user owns (a manager's view)
    phone: str | None = None                # E.164, as stored

    def __post_init__(self) -> None:
        if self.reason is not None and not REASON_PATTERN.match(self.reason):
            raise ReportFilterError(f"reason: a reason code such as dnc_national, got {self.reason!r}")
        if self.state is not None and not STATE_PATTERN.match(self.state):
            raise ReportFilterError(f"state: a two-letter code such as FL, got {self.state!r}")
        unknown = set(self.verdicts) - set(ALL_VERDICTS)
        if unknown or not self.verdicts:
            raise ReportFilterError(f"verdict: one or more of {', '.join(ALL_VERDICTS)}, got {sorted(unknown)}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ReportFilterError(f"{name}: give a time zone (e.g. Z for UTC)")
        if self.since and self.until and self.since >= self.until:
            raise ReportFilterError("until: must be after since")


@dataclass(frozen=True)
class ReportRow:
    decision_id: str
    decided_at: datetime
    verdict: str
    phone: str
    states: tuple[str, ...]
    campaign_id: int | None
    campaign: str | None
    attempt_id: int | None
    rules_version: str
    reasons: tuple[dict, ...]               # {"code", "rule", "detail"} as the gate gave them
    next_allowed_at: str | None

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(reason.get("code", "") for reason in self.reasons)

    def to_dict(self) -> dict:
        return {"decision_id": self.decision_id, "decided_at": iso_utc(self.decided_at),
                "verdict": self.verdict, "phone": self.phone, "states": list(self.states),
                "campaign_id": self.campaign_id, "campaign": self.campaign, "attempt_id": self.attempt_id,
                "rules_version": self.rules_version, "reasons": list(self.reasons),
                "next_allowed_at": self.next_allowed_at}


@dataclass
class ReasonSummary:
    total: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)    # reason -> verdict -> n
    by_state: dict[str, int] = field(default_factory=dict)
    by_campaign: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"total": self.total, "by_verdict": self.by_verdict, "by_reason": self.by_reason,
                "by_state": self.by_state, "by_campaign": self.by_campaign}


# --- queries ----------------------------------------------------------------------------------

def _statement(filters: ReportFilter):
    statement = (select(Decision.id, Decision.decided_at, Decision.verdict, Decision.phone,
                        Decision.rules_version, Decision.decision, Decision.attempt_id,
                        Campaign.id, Campaign.name, Contact.state)
                 .outerjoin(Attempt, Attempt.id == Decision.attempt_id)
                 .outerjoin(Campaign, Campaign.id == Attempt.campaign_id)
                 .outerjoin(Contact, Contact.id == Attempt.contact_id)
                 .where(Decision.verdict.in_(filters.verdicts)))
    if filters.campaign_id is not None:
        statement = statement.where(Attempt.campaign_id == filters.campaign_id)
    if filters.owner_id is not None:
        statement = statement.where(Campaign.owner_id == filters.owner_id)
    if filters.since is not None:
        statement = statement.where(Decision.decided_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(Decision.decided_at < filters.until)
    if filters.phone is not None:
        statement = statement.where(Decision.phone == filters.phone)
    if filters.reason is not None:
        # A prefilter only (`_` is a LIKE wildcard); each row's codes are checked exactly below.
        statement = statement.where(Decision.decision.like(f'%"code":"{filters.reason}"%'))
    return statement.order_by(Decision.decided_at.desc(), Decision.id).execution_options(yield_per=_STREAM_ROWS)


def _row(record) -> ReportRow:
    decision_id, decided_at, verdict, phone, rules_version, text, attempt_id, campaign_id, name, state = record
    decision = json.loads(text)
    states = tuple(decision.get("states") or ())
    if state and state not in states:
        states = (state, *states)
    return ReportRow(decision_id=decision_id, decided_at=decided_at, verdict=verdict, phone=phone,
                     states=states, campaign_id=campaign_id, campaign=name, attempt_id=attempt_id,
                     rules_version=rules_version, reasons=tuple(decision.get("reasons") or ()),
                     next_allowed_at=decision.get("next_allowed_at"))


def iter_report(session: Session, filters: ReportFilter) -> Iterator[ReportRow]:
    """Every matching decision, newest first, streamed."""
    for record in session.execute(_statement(filters)):
        row = _row(record)
        if filters.reason is not None and filters.reason not in row.reason_codes:
            continue
        if filters.state is not None and filters.state not in row.states:
            continue
        yield row


def report_page(session: Session, filters: ReportFilter, *, limit: int = 100, offset: int = 0) -> list[ReportRow]:
    """One page of `iter_report` (newest first)."""
    rows = []
    for index, row in enumerate(iter_report(session, filters)):
        if index >= offset + limit:
            break
        if index >= offset:
            rows.append(row)
    return rows


def summarize(session: Session, filters: ReportFilter) -> ReasonSummary:
    """Counts of the matching decisions by verdict, reason (and verdict), state and campaign.

    A decision with two reasons counts once in `total` and once under each reason."""
    summary = ReasonSummary()
    verdicts, states, campaigns = Counter(), Counter(), Counter()
    reasons: dict[str, Counter] = {}
    for row in iter_report(session, filters):
        summary.total += 1
        verdicts[row.verdict] += 1
        for code in dict.fromkeys(row.reason_codes):
            reasons.setdefault(code, Counter())[row.verdict] += 1
        states[row.states[0] if row.states else "unknown"] += 1
        campaigns[row.campaign or "none"] += 1
    summary.by_verdict, summary.by_state, summary.by_campaign = dict(verdicts), dict(states), dict(campaigns)
    summary.by_reason = {code: dict(counts) for code, counts in sorted(reasons.items())}
    return summary


def reasons_over_time(session: Session, filters: ReportFilter) -> list[dict]:
    """Matching decisions per UTC day and reason, oldest day first: the chart's series.

    Rows `{"day": "2026-07-15", "reason": "dnc_national", "count": 3}`."""
    counts: Counter = Counter()
    for row in iter_report(session, filters):
        day = row.decided_at.date().isoformat()
        for code in dict.fromkeys(row.reason_codes):
            counts[(day, code)] += 1
    return [{"day": day, "reason": code, "count": count} for (day, code), count in sorted(counts.items())]


# --- CSV --------------------------------------------------------------------------------------

def csv_line(values: Iterable[object]) -> str:
    """One CSV line whose cells a spreadsheet shows as text, never runs as formulas."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe_cell(value) for value in values])
    return buffer.getvalue()


def iter_report_csv(session: Session, filters: ReportFilter) -> Iterator[str]:
    """The report as CSV lines (header first), safe from formula injection."""
    yield csv_line(CSV_COLUMNS)
    for row in iter_report(session, filters):
        yield csv_line((iso_utc(row.decided_at), row.verdict, " ".join(row.reason_codes), row.phone,
                        " ".join(row.states), row.campaign_id, row.campaign, row.attempt_id,
                        row.rules_version, row.next_allowed_at, row.decision_id,
                        " | ".join(str(reason.get("detail", "")) for reason in row.reasons)))


# --- decisions of one phone -------------------------------------------------------------------

def decisions_for_phone(session: Session, phone: str, *, owner_id: int | None = None,
                        limit: int = 200) -> list[ReportRow]:
    """Every stored decision (any verdict) about `phone` (E.164), newest first."""
    return report_page(session, ReportFilter(phone=phone, verdicts=ALL_VERDICTS, owner_id=owner_id),
                       limit=limit)
