"""Value types the gate reads and returns. Plain frozen dataclasses: no I/O, no clock."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Channel(StrEnum):
    VOICE = "voice"
    SMS = "sms"


class Purpose(StrEnum):
    TELEMARKETING = "telemarketing"
    INFORMATIONAL = "informational"


class VoiceKind(StrEnum):
    LIVE = "live"
    PRERECORDED = "prerecorded"
    ARTIFICIAL = "artificial"


class LineType(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    VOIP = "voip"
    UNKNOWN = "unknown"


class ConsentKind(StrEnum):
    WRITTEN = "written"
    EXPRESS = "express"


class ConsentNeed(StrEnum):
    WRITTEN = "written"
    EXPRESS = "express"
    NONE = "none"


class Verdict(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a contact may be: the result of resolving a phone number, ZIP and state."""

    e164: str | None                 # None when the phone is not a valid NANP number
    timezones: tuple[str, ...]       # candidate IANA zones, sorted; empty when unknown
    states: tuple[str, ...]          # candidate state codes, sorted
    region: str | None = None        # phonenumbers region code of the number (US, PR, CA, ...)
    # What the zones were formed from, when known (resolve_location gives them): the number's own
    # zones as phonenumbers places them, before any override, and the zones its ZIP or state adds.
    # With them the zones are formed again under a pack's overrides without asking phonenumbers
    # or zipcodes: a stored decision replays the same after an upgrade of either.
    number_zones: tuple[str, ...] | None = None
    address_zones: tuple[str, ...] | None = None

    @property
    def valid(self) -> bool:
        return self.e164 is not None


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    kind: ConsentKind
    channels: frozenset[Channel]
    purposes: frozenset[Purpose]
    granted_at: datetime
    expires_at: datetime | None = None
    evidence: str | None = None
    # Who obtained it. The gate never reads it: the engine keeps only the consents of the
    # campaign's seller before asking (scheduler.facts.for_seller), and a scenario has none.
    seller: str | None = None


@dataclass(frozen=True, slots=True)
class RevocationFact:
    at: datetime
    channels: frozenset[Channel]
    via: str | None = None


@dataclass(frozen=True, slots=True)
class SellerRelationship:
    """The latest business-relationship dates on file with one seller. The gate never reads it: an
    EBR exempts only its seller's campaigns (47 CFR 64.1200(f)(5)), so the engine folds the
    campaign's seller's dates into `Facts.last_transaction_at/last_inquiry_at` before asking
    (scheduler.facts.for_seller), and a scenario's `ebr` has no seller."""

    seller: str
    last_transaction_at: datetime | None = None
    last_inquiry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NationalDnc:
    listed: bool
    registered_on: str | None
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class PriorAttempt:
    at: datetime
    channel: Channel


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the gate knows about one contact at decision time."""

    consents: tuple[ConsentGrant, ...] = ()
    revocations: tuple[RevocationFact, ...] = ()
    national_dnc: NationalDnc | None = None      # None: no registry data at all (fails closed)
    state_dnc: tuple[str, ...] = ()              # states whose lists hold the number
    internal_dnc: bool = False
    litigator: bool = False
    last_transaction_at: datetime | None = None
    last_inquiry_at: datetime | None = None
    history: tuple[PriorAttempt, ...] = ()
    # Every seller's relationships, as the ledger holds them; the gate reads only the two dates
    # above (see SellerRelationship).
    relationships: tuple[SellerRelationship, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    channel: Channel
    purpose: Purpose
    voice: VoiceKind | None          # voice channel only
    automated: bool
    line_type: LineType
    location: Location
    phone: str = ""                  # as given, for the record
    zip: str | None = None           # as given
    state: str | None = None         # as given


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    rule: str
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    next_allowed_at: datetime | None
    timezones: tuple[str, ...]
    states: tuple[str, ...]
    rules_version: str
    consent_needed: ConsentNeed = field(default=ConsentNeed.NONE)
