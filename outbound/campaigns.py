"""Campaigns: creation with validated settings, the lifecycle, and status counts.

A campaign moves draft → running ⇄ paused → completed. Starting (or resuming) one creates one
pending attempt per contact that has none yet, due at once; the dispatch loop then takes them
through the gate. Stopping cancels what has not been dialed.

Settings live in `Campaign.settings` as JSON, validated by `CampaignSettings`. Campaign hours
only ever narrow the legal calling windows: dispatch applies them after the gate. Hours that
could never overlap the federal window are refused here, so a campaign that can never place a
call cannot be created.

Every change is validated before anything is written: bad input changes nothing.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlmodel import Session

from consent.types import Channel, Purpose
from consent.types import VoiceKind as Voice
from outbound import audit
from outbound.models import Attempt, Campaign, Contact, Decision
from outbound.conversation_settings import ConversationSettings

# 47 CFR 64.1200(c)(1): no telephone solicitation before 08:00 or after 21:00 local time. The
# gate enforces the full rule pack; this copy only lets `create` refuse hours that could never
# overlap it (the `outbound` core may not import the rule pack, see DESIGN.md "Packages").
FEDERAL_WINDOW_MINUTES = (8 * 60, 21 * 60)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# `sending`: marked just before the carrier request, until the carrier id is recorded.
OPEN_ATTEMPT_STATUSES = ("pending", "claimed", "sending", "dialing")
ACTOR_SYSTEM = "system"


class CampaignError(ValueError):
    """Input that cannot be used; `field` names what to fix, the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class CampaignNotFound(LookupError):
    """No campaign has that name or id."""


class CampaignExists(ValueError):
    """A campaign with that name already exists."""


class InvalidTransition(ValueError):
    """The campaign's status does not allow that change (e.g. resuming a completed campaign)."""


class RetryOutcome(StrEnum):
    """Ends of an attempt that may be retried (set by the carrier-event handling)."""

    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    VOICEMAIL = "voicemail"


# --- settings ---------------------------------------------------------------------------------

class RetryRule(BaseModel):
    """Retry after `delay_seconds`, as long as the contact has had fewer than `max_attempts`
    attempts in this campaign (the first attempt counts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_seconds: int = Field(ge=60, le=30 * 86400)
    max_attempts: int = Field(ge=1, le=20)


class CampaignSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: str | None = Field(default=None, description="local HH:MM-HH:MM; narrows the legal window")
    start_date: date | None = None
    end_date: date | None = None
    cps: float = Field(default=1.0, gt=0, le=100, description="calls (or texts) per second ceiling")
    max_concurrent: int = Field(default=10, ge=1, le=10_000, description="attempts dialing at once")
    retry: dict[RetryOutcome, RetryRule] = Field(default_factory=dict)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)

    @field_validator("hours")
    @classmethod
    def _hours_overlap_federal_window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        start, end = parse_hours(value)
        federal_start, federal_end = FEDERAL_WINDOW_MINUTES
        if end <= federal_start or start >= federal_end:
            raise ValueError(f"{value} lies entirely outside the federal calling window 08:00-21:00 "
                             "(contact's local time): no call could ever be placed; choose hours "
                             "that overlap it")
        return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"

    @model_validator(mode="after")
    def _dates_in_order(self) -> CampaignSettings:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self

    def hours_minutes(self) -> tuple[int, int] | None:
        return None if self.hours is None else parse_hours(self.hours)


def parse_hours(text: str) -> tuple[int, int]:
    """`09:00-18:00` → (540, 1080) minutes after local midnight; the span may not wrap midnight."""
    match = HOURS.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM (e.g. 09:00-18:00)")
    start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(f"{text!r} is not a valid time span")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start >= end:
        raise ValueError(f"{text!r}: the start must be before the end (spans past midnight are not supported)")
    return start, end


def parse_duration(text: str) -> int:
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30m, 4h or 1d")
    return int(match.group(1)) * DURATION_SECONDS[match.group(2)]


def parse_retry(text: str) -> tuple[str, dict[str, int]]:
    """`no-answer=4h:3` → ("no-answer", {"delay_seconds": 14400, "max_attempts": 3})."""
    outcome, sep, rule = text.partition("=")
    delay, sep2, max_attempts = rule.partition(":")
    if not sep or not sep2:
        raise CampaignError("retry", f"{text!r} is not OUTCOME=DELAY:MAX_ATTEMPTS (e.g. no-answer=4h:3)")
    if outcome.strip() not in {member.value for member in RetryOutcome}:
        raise CampaignError("retry", f"{outcome.strip()!r} is not one of "
                                     f"{', '.join(member.value for member in RetryOutcome)}")
    try:
        return outcome.strip(), {"delay_seconds": parse_duration(delay), "max_attempts": int(max_attempts)}
    except ValueError as error:
        raise CampaignError("retry", str(error)) from None


# --- the campaign as asked for -----------------------------------------------------------------

class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    purpose: Purpose
    voice: Voice | None = None
    automated: bool = True
    caller_id: str
    script: str | None = None
    settings: CampaignSettings = Field(default_factory=CampaignSettings)

    @field_validator("caller_id")
    @classmethod
    def _caller_id_is_e164(cls, value: str) -> str:
        if not E164.match(value) or not _is_valid_number(value):
            raise ValueError(f"{value!r} is not a valid E.164 number (e.g. +12125550123)")
        return value

    @model_validator(mode="after")
    def _voice_matches_channel(self) -> CampaignIn:
        if self.channel is Channel.VOICE and self.voice is None:
            raise ValueError("voice: required for a voice campaign (live, prerecorded or artificial)")
        if self.channel is Channel.SMS and self.voice is not None:
            raise ValueError("voice: only for voice campaigns; leave it out for sms")
        if self.channel is Channel.SMS and not (self.script or "").strip():
            raise ValueError("script: required for an sms campaign (it is the message text)")
        if self.settings.conversation.script and self.voice is Voice.LIVE:
            # The script is spoken by a synthetic voice (<Say>): the gate must see the call as
            # what it is, so it requires the consent artificial-voice calls need (FCC 24-17).
            raise ValueError("voice: a conversation script is spoken by a synthetic voice; set voice to "
                             "artificial (or prerecorded), not live")
        return self


def _is_valid_number(e164: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def validate_campaign(raw: dict[str, Any], *, load_scripts: bool = True) -> CampaignIn:
    """Validate a campaign as the CLI or the API received it; raises CampaignError naming the field."""
    try:
        # load_scripts: a conversation script is loaded and validated on input only; stored
        # settings are read without touching the file (see outbound.conversation_settings).
        return CampaignIn.model_validate(raw, context={"load_scripts": load_scripts})
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "campaign"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        for name in ("voice", "script"):
            if message.startswith(f"{name}: "):
                location, message = name, message.removeprefix(f"{name}: ")
        raise CampaignError(location, message) from None


def campaign_settings(campaign: Campaign) -> CampaignSettings:
    return CampaignSettings.model_validate(campaign.settings or {})


def campaign_seller(campaign: Campaign) -> str:
    """The seller a campaign calls for: the name its calls give (`conversation.seller_name`),
    else the campaign's name. Only consents obtained by this seller count for its attempts."""
    return campaign_settings(campaign).conversation.seller_name or campaign.name


# --- lifecycle --------------------------------------------------------------------------------

def create_campaign(session: Session, spec: CampaignIn, *, actor: str, at: datetime) -> Campaign:
    if session.execute(select(Campaign.id).where(Campaign.name == spec.name)).first() is not None:
        raise CampaignExists(f"name: a campaign named {spec.name!r} already exists")
    campaign = Campaign(name=spec.name, status="draft", channel=spec.channel.value,
                        purpose=spec.purpose.value, voice=spec.voice.value if spec.voice else None,
                        automated=spec.automated, caller_id=spec.caller_id, script=spec.script,
                        settings=spec.settings.model_dump(mode="json"), created_at=at, updated_at=at)
    session.add(campaign)
    session.flush()
    audit.append(session, actor=actor, action="campaign.created", subject=f"campaign:{campaign.id}",
                 at=at, payload=campaign_dict(campaign))
    return campaign


def update_settings(session: Session, campaign: Campaign, changes: dict[str, Any], *, actor: str,
                    at: datetime) -> Campaign:
    """Change the settings named in `changes` (hours, start_date, end_date, cps, max_concurrent,
    retry, conversation: each replaced whole), the rest as they were. Any status but completed:
    the next dispatch paces and schedules by the new settings, and the gate still decides every
    attempt at dial time. Audited with both versions. Raises CampaignError naming the field
    (nothing stored) or InvalidTransition."""
    _require_status(campaign, ("draft", "running", "paused"), "change the settings of")
    before = dict(campaign.settings or {})
    spec = validate_campaign({**_identity(campaign), "settings": {**before, **changes}},
                             load_scripts="conversation" in changes)
    campaign.settings, campaign.updated_at = spec.settings.model_dump(mode="json"), at
    session.add(campaign)
    session.flush()
    audit.append(session, actor=actor, action="campaign.settings_changed", subject=f"campaign:{campaign.id}",
                 at=at, payload={"before": before, "after": campaign.settings})
    return campaign


def _identity(campaign: Campaign) -> dict[str, Any]:
    """What the campaign was created as, apart from its settings: checked with them again,
    since some settings depend on it (a conversation script needs a synthetic voice)."""
    return {"name": campaign.name, "channel": campaign.channel, "purpose": campaign.purpose,
            "voice": campaign.voice, "automated": campaign.automated,
            "caller_id": campaign.caller_id, "script": campaign.script}


def find_campaign(session: Session, key: str | int) -> Campaign:
    """By id (an int, or digits) or by name."""
    campaign = None
    if isinstance(key, int) or str(key).isdigit():
        campaign = session.get(Campaign, int(key))
    if campaign is None and isinstance(key, str):
        campaign = session.execute(select(Campaign).where(Campaign.name == key)).scalar_one_or_none()
    if campaign is None:
        raise CampaignNotFound(f"no campaign {key!r}")
    return campaign


CAMPAIGN_STATUSES = ("draft", "running", "paused", "completed")


def newest_campaigns(session: Session, *, owner_id: int | None = None, status: str | None = None) -> list[Campaign]:
    """Newest first; only `owner_id`'s when given, only those in `status` when given."""
    statement = select(Campaign).order_by(Campaign.id.desc())
    if owner_id is not None:
        statement = statement.where(Campaign.owner_id == owner_id)
    if status is not None:
        statement = statement.where(Campaign.status == status)
    return list(session.scalars(statement))


def start_campaign(session: Session, campaign: Campaign, *, actor: str, at: datetime) -> int:
    """draft (or running) → running; returns how many attempts were created."""
    _require_status(campaign, ("draft", "running"), "start",
                    hint={"paused": "use resume", "completed": "a stopped campaign cannot restart"})
    _require_agents_for_live_voice(session, campaign)
    created = create_first_attempts(session, campaign, at)
    _set_status(session, campaign, "running", actor=actor, at=at, extra={"attempts_created": created})
    return created


def _require_agents_for_live_voice(session: Session, campaign: Campaign) -> None:
    # A live telemarketing call must reach a person within 2 s of the greeting (47 CFR
    # 64.1200(a)(7), the abandoned-call rule): with no agent defined every answer would be
    # abandoned. The scheduler then paces such campaigns by free agents (scheduler.pacing).
    from outbound.agents import any_agent_defined

    if (campaign.channel == "voice" and campaign.voice == "live" and campaign.purpose == "telemarketing"
            and not any_agent_defined(session)):
        raise InvalidTransition(f"cannot start campaign {campaign.name!r}: it is live telemarketing but no agent "
                                "is defined to take the answered calls; add agents (outbound agent add) first, "
                                "or use voice prerecorded or artificial with a conversation script")


def pause_campaign(session: Session, campaign: Campaign, *, actor: str, at: datetime) -> None:
    """running → paused: dispatch stops claiming; calls already dialing finish."""
    _require_status(campaign, ("running", "paused"), "pause")
    _set_status(session, campaign, "paused", actor=actor, at=at)


def resume_campaign(session: Session, campaign: Campaign, *, actor: str, at: datetime) -> int:
    _require_status(campaign, ("paused", "running"), "resume")
    created = create_first_attempts(session, campaign, at)
    _set_status(session, campaign, "running", actor=actor, at=at, extra={"attempts_created": created})
    return created


def stop_campaign(session: Session, campaign: Campaign, *, actor: str, at: datetime) -> int:
    """→ completed; attempts not yet dialing are cancelled. Returns how many were cancelled.

    A claimed attempt is cancelled too: dispatch moves an attempt out of `claimed` only with a
    conditional update on that status, so the worker holding it will not dial it."""
    _require_status(campaign, CAMPAIGN_STATUSES, "stop")
    cancelled = session.execute(
        update(Attempt).where(Attempt.campaign_id == campaign.id,
                              Attempt.status.in_(("pending", "claimed")))
        .values(status="cancelled", outcome="campaign_stopped", claimed_by=None, lease_until=None,
                updated_at=at)).rowcount
    _set_status(session, campaign, "completed", actor=actor, at=at, extra={"attempts_cancelled": cancelled})
    return cancelled


def complete_if_done(session: Session, campaign: Campaign, *, at: datetime) -> bool:
    """running → completed when no attempt is pending, claimed or dialing (housekeeping)."""
    if campaign.status != "running":
        return False
    has_open = session.execute(select(Attempt.id).where(
        Attempt.campaign_id == campaign.id, Attempt.status.in_(OPEN_ATTEMPT_STATUSES)).limit(1)).first()
    has_contacts_without_attempt = session.execute(select(Contact.id).where(
        Contact.campaign_id == campaign.id, ~_has_attempt(Contact.id, campaign.id)).limit(1)).first()
    if has_open or has_contacts_without_attempt:
        return False
    _set_status(session, campaign, "completed", actor=ACTOR_SYSTEM, at=at, extra={"reason": "no open attempts"})
    return True


def create_first_attempts(session: Session, campaign: Campaign, at: datetime) -> int:
    """One pending attempt (number 1, due now) per contact of the campaign that has none.

    One INSERT … SELECT: idempotent, and the unique (campaign, contact, attempt_no) constraint
    keeps a concurrent start from adding a second one (the loser's statement fails and rolls
    back rather than duplicating)."""
    channel = campaign.channel
    rows = select(literal(campaign.id), Contact.id, literal(channel), literal("pending"), literal(1),
                  literal(at, type_=Attempt.__table__.c.due_at.type),
                  literal(at, type_=Attempt.__table__.c.created_at.type),
                  literal(at, type_=Attempt.__table__.c.updated_at.type)).where(
        Contact.campaign_id == campaign.id, ~_has_attempt(Contact.id, campaign.id))
    statement = insert(Attempt).from_select(
        ["campaign_id", "contact_id", "channel", "status", "attempt_no", "due_at", "created_at",
         "updated_at"], rows)
    return session.execute(statement).rowcount


def _has_attempt(contact_id, campaign_id: int):
    return exists().where(and_(Attempt.contact_id == contact_id, Attempt.campaign_id == campaign_id))


def _require_status(campaign: Campaign, allowed: tuple[str, ...], action: str,
                    hint: dict[str, str] | None = None) -> None:
    if campaign.status not in allowed:
        more = (hint or {}).get(campaign.status)
        raise InvalidTransition(f"cannot {action} campaign {campaign.name!r}: it is {campaign.status}"
                                + (f" ({more})" if more else ""))


def _set_status(session: Session, campaign: Campaign, status: str, *, actor: str, at: datetime,
                extra: dict | None = None) -> None:
    previous = campaign.status
    campaign.status, campaign.updated_at = status, at
    session.add(campaign)
    session.flush()
    audit.append(session, actor=actor, action=f"campaign.{status}", subject=f"campaign:{campaign.id}",
                 at=at, payload={"from": previous, "to": status, **(extra or {})})


# --- views ------------------------------------------------------------------------------------

def campaign_dict(campaign: Campaign) -> dict[str, Any]:
    return {"id": campaign.id, "name": campaign.name, "status": campaign.status,
            "channel": campaign.channel, "purpose": campaign.purpose, "voice": campaign.voice,
            "automated": campaign.automated, "caller_id": campaign.caller_id, "script": campaign.script,
            "seller": campaign_seller(campaign), "settings": campaign.settings}


@dataclass
class CampaignStatus:
    campaign: dict[str, Any]
    attempts: dict[str, int]                       # by attempt status
    decisions: dict[str, int]                      # allow / defer / block
    deferred_by_reason: dict[str, int] = field(default_factory=dict)
    blocked_by_reason: dict[str, int] = field(default_factory=dict)
    waiting_for_campaign_hours: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def campaign_status(session: Session, campaign: Campaign) -> CampaignStatus:
    """Counts of attempts by status, and of gate decisions by verdict and by reason code."""
    by_status = dict(session.execute(select(Attempt.status, func.count()).where(
        Attempt.campaign_id == campaign.id).group_by(Attempt.status)).all())
    decisions = _decisions_of(campaign.id)
    by_verdict = dict(session.execute(select(Decision.verdict, func.count()).where(
        Decision.attempt_id.in_(decisions)).group_by(Decision.verdict)).all())
    reasons: dict[str, Counter] = {"defer": Counter(), "block": Counter()}
    # Reasons sit inside the stored decision JSON; only deferred and blocked ones are read,
    # streamed, so memory stays flat on a big campaign.
    statement = (select(Decision.verdict, Decision.decision)
                 .where(Decision.attempt_id.in_(decisions), Decision.verdict.in_(("defer", "block")))
                 .execution_options(yield_per=5000))
    for verdict, text in session.execute(statement):
        reasons[verdict].update({reason["code"] for reason in json.loads(text)["reasons"]})
    waiting = session.execute(select(func.count()).select_from(Attempt).where(
        Attempt.campaign_id == campaign.id, Attempt.status == "pending",
        Attempt.error.like("campaign_hours%"))).scalar_one()
    return CampaignStatus(campaign=campaign_dict(campaign), attempts=by_status, decisions=by_verdict,
                          deferred_by_reason=dict(reasons["defer"]), blocked_by_reason=dict(reasons["block"]),
                          waiting_for_campaign_hours=waiting)


def _decisions_of(campaign_id: int):
    return select(Attempt.id).where(Attempt.campaign_id == campaign_id)

