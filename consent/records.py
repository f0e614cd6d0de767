"""The consent ledger: consent records, revocations and business relationships, and the facts
the gate reads from them.

Nothing here is ever deleted. A newer consent for the same phone, seller, channels and purposes
supersedes the older one (both rows stay, linked by `supersedes_id`/`superseded_by_id`), so any
past decision can be explained from what was on file at its instant. Every change is written to
the audit log through the injected `audit` callable, in the same transaction, with its actor.

Functions that change data flush and leave the commit to the caller, except `revoke`: an opt-out
is committed before `revoke` returns, so nothing that happens next can lose it. An opt-out is also
a do-not-call request: `revoke` puts the number on the internal list in the same transaction.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent import dnc
from consent.ledger_io import (
    BusinessRelationshipIn, ConsentIn, LoadedFile, RevocationIn, RevocationVia, RowError, e164_or_none,
    same_seller, seller_key,
)
from consent.row_digest import stored_digests
from consent.tables import BusinessRelationship, ConsentRecord, Revocation
from consent.types import (
    Channel, ConsentGrant, ConsentKind, ConsentNeed, Purpose, RevocationFact, SellerRelationship,
)


class Audit(Protocol):
    def __call__(self, session: Session, *, actor: str, action: str, subject: str | None,
                 payload: dict, at: datetime) -> Any: ...


class LedgerError(ValueError):
    """A ledger request that cannot be carried out; the message says what to fix."""


class InvalidPhone(LedgerError):
    pass


T = TypeVar("T")


class Recorded(NamedTuple, Generic[T]):
    """The stored row and whether this call stored it (False: an identical row was on file)."""

    row: T
    created: bool


# Phones in one IN (...) list: far below the SQLite (32766) and PostgreSQL parameter limits.
_BATCH = 5000
# What the `show` command and GET /v1/consent assume each purpose needs: telemarketing texts and
# automated or artificial-voice telemarketing calls need written consent; informational ones
# need express consent (DESIGN.md, "Consent needed").
NEED_BY_PURPOSE = {Purpose.TELEMARKETING: ConsentNeed.WRITTEN, Purpose.INFORMATIONAL: ConsentNeed.EXPRESS}


# --- small conversions ------------------------------------------------------------------------

def normalize_phone(phone: str) -> str:
    e164 = e164_or_none(phone.strip()) if isinstance(phone, str) else None
    if e164 is None:
        raise InvalidPhone(f"not a valid NANP phone number: {phone!r}")
    return e164


def _join_channels(channels: Iterable[Channel]) -> str:
    chosen = {Channel(c) for c in channels}
    return " ".join(c.value for c in Channel if c in chosen)       # declaration order: canonical


def _join_purposes(purposes: Iterable[Purpose]) -> str:
    chosen = {Purpose(p) for p in purposes}
    return " ".join(p.value for p in Purpose if p in chosen)


def _channels(stored: str) -> frozenset[Channel]:
    return frozenset(Channel(c) for c in stored.split())


def _purposes(stored: str) -> frozenset[Purpose]:
    return frozenset(Purpose(p) for p in stored.split())


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat().replace("+00:00", "Z")


def _require_aware(name: str, instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise LedgerError(f"{name} has no time zone: give an aware datetime (UTC)")


# --- consent ----------------------------------------------------------------------------------

def _scope_key(record: ConsentRecord) -> tuple[str, str | None, str, str]:
    return record.phone, record.seller, record.channels, record.purposes


def _scope_chain(session: Session, phone: str, seller: str | None, channels: str,
                 purposes: str) -> list[ConsentRecord]:
    """Every record of one scope, locked on PostgreSQL so two writers cannot relink it at once."""
    seller_clause = ConsentRecord.seller.is_(None) if seller is None else ConsentRecord.seller == seller
    query = (select(ConsentRecord)
             .where(ConsentRecord.phone == phone, seller_clause, ConsentRecord.channels == channels,
                    ConsentRecord.purposes == purposes)
             .order_by(ConsentRecord.id)
             .with_for_update())
    return list(session.scalars(query))


def _same_grant(record: ConsentRecord, record_in: ConsentIn) -> bool:
    return (record.kind == record_in.kind.value and record.granted_at == record_in.granted_at
            and record.expires_at == record_in.expires_at and record.brand == record_in.brand
            and record.evidence == record_in.evidence.as_stored())


def _audited_evidence(evidence: dict) -> dict:
    # The row keeps the disclosure text; the audit keeps its sha256, which is enough to detect
    # an edit of the text and keeps the chain small.
    return {name: value for name, value in evidence.items() if name != "disclosure_text"}


def _require_provable(record_in: ConsentIn) -> None:
    """ConsentIn checks both on input; a record built without validation must not slip past."""
    if seller_key(record_in.seller) is None:
        raise LedgerError("seller: name the seller that obtained this consent: it counts only for "
                          "that seller's campaigns")
    if record_in.kind is ConsentKind.WRITTEN and not record_in.evidence.as_stored():
        raise LedgerError("evidence: written consent needs its evidence (certificate_id, disclosure_text, "
                          "source, page_url, ...)")


def add_consent(session: Session, record_in: ConsentIn, *, actor: str, at: datetime,
                audit: Audit) -> Recorded[ConsentRecord]:
    """Store one consent and link it into its scope's supersession chain.

    Re-sending a record identical to one on file (same scope, kind, times, brand, evidence)
    stores nothing and returns the existing row, so importing a file twice is harmless.
    """
    _require_aware("at", at)
    _require_provable(record_in)
    channels, purposes = _join_channels(record_in.channels), _join_purposes(record_in.purposes)
    chain = _scope_chain(session, record_in.phone, record_in.seller, channels, purposes)
    for existing in chain:
        if _same_grant(existing, record_in):
            return Recorded(existing, False)
    record = ConsentRecord(
        phone=record_in.phone, kind=record_in.kind.value, channels=channels, purposes=purposes,
        seller=record_in.seller, brand=record_in.brand, granted_at=record_in.granted_at,
        expires_at=record_in.expires_at, evidence=record_in.evidence.as_stored(),
        recorded_at=at, recorded_by=actor)
    session.add(record)
    session.flush()
    audit(session, actor=actor, action="consent.granted", subject=record.phone, at=at, payload={
        "record_id": record.id, "kind": record.kind, "channels": channels, "purposes": purposes,
        "seller": record.seller, "brand": record.brand, "granted_at": _iso(record.granted_at),
        "expires_at": _iso(record.expires_at), "evidence": _audited_evidence(record.evidence),
        "row_digests": stored_digests(session, record)})
    _link_chain(session, [*chain, record], actor=actor, at=at, audit=audit)
    return Recorded(record, True)


def _link_chain(session: Session, chain: list[ConsentRecord], *, actor: str, at: datetime,
                audit: Audit) -> None:
    """Link a scope's records in grant order: each is superseded by the next one granted.

    Ordering by grant rather than by arrival means that loading an old record late (a backfill)
    slots it into the past instead of hiding the newer consent that is already on file.
    """
    ordered = sorted(chain, key=lambda record: (record.granted_at, record.id))
    for older, newer in zip(ordered, ordered[1:]):
        if older.superseded_by_id != newer.id or newer.supersedes_id != older.id:
            supersede(session, older, newer, actor=actor, at=at, audit=audit)


def supersede(session: Session, old: ConsentRecord, new: ConsentRecord, *, actor: str, at: datetime,
              audit: Audit) -> None:
    """Mark `old` as superseded by `new` (same scope). Both rows stay; only the links change."""
    if old.id is None or new.id is None:
        raise LedgerError("supersede stored records only: flush them first")
    if old.id == new.id:
        raise LedgerError(f"consent#{old.id} cannot supersede itself")
    if _scope_key(old) != _scope_key(new):
        raise LedgerError(f"consent#{new.id} cannot supersede consent#{old.id}: a record is superseded "
                          f"only by one for the same phone, seller, channels and purposes")
    payload = {"superseded_id": old.id, "superseded_by_id": new.id,
               "previous_superseded_by_id": old.superseded_by_id,
               "previous_supersedes_id": new.supersedes_id}
    old.superseded_by_id, new.supersedes_id = new.id, old.id
    session.add_all([old, new])
    session.flush()
    payload["row_digests"] = stored_digests(session, old, new)
    audit(session, actor=actor, action="consent.superseded", subject=old.phone, at=at, payload=payload)


# --- revocations ------------------------------------------------------------------------------

def revoke(session: Session, phone: str, channels: Iterable[Channel], via: RevocationVia | str,
           received_at: datetime, *, actor: str, at: datetime, audit: Audit,
           note: str | None = None) -> Recorded[Revocation]:
    """Store an opt-out and COMMIT before returning.

    An opt-out must be on disk before anything else happens (a call placed after a STOP that
    was lost in a rolled-back transaction is a violation), so this function commits the session
    itself, with the revocation and its audit event in one transaction. Call it first: anything
    else pending in the same session is committed with it.

    A `received_at` later than `at` (the instant we record it) can only be a clock error; it is
    stored as `at`, the latest instant it can really have been received, so that the opt-out is
    in force from now on. The audit event keeps the time given.
    """
    _require_aware("at", at)
    _require_aware("received_at", received_at)
    e164 = normalize_phone(phone)
    chosen = {Channel(c) for c in channels}
    if not chosen:
        raise LedgerError("name at least one channel to revoke (voice, sms)")
    try:
        via = RevocationVia(via)
    except ValueError:
        raise LedgerError(f"unknown via {via!r}: use one of "
                          f"{', '.join(v.value for v in RevocationVia)}") from None
    received = min(received_at, at)
    joined = _join_channels(chosen)
    existing = session.scalars(select(Revocation).where(
        Revocation.phone == e164, Revocation.channels == joined, Revocation.via == via.value,
        Revocation.received_at == received)).first()
    if existing is not None:
        session.commit()
        session.refresh(existing)
        return Recorded(existing, False)
    revocation = Revocation(phone=e164, channels=joined, via=via.value, received_at=received,
                            recorded_at=at, recorded_by=actor, note=note)
    session.add(revocation)
    session.flush()
    audit(session, actor=actor, action="consent.revoked", subject=e164, at=at, payload={
        "revocation_id": revocation.id, "channels": joined, "via": via.value,
        "received_at": _iso(received), "received_at_given": _iso(received_at), "note": note,
        "row_digests": stored_digests(session, revocation)})
    _put_on_internal_list(session, revocation, actor=actor, at=at, audit=audit)
    session.commit()
    session.refresh(revocation)      # loaded again, so the caller can read it after the session ends
    return Recorded(revocation, True)


def _put_on_internal_list(session: Session, revocation: Revocation, *, actor: str, at: datetime,
                          audit: Audit) -> None:
    """An opt-out is also a do-not-call request (47 CFR 64.1200(d)): the number goes on the
    internal list in the revocation's own transaction, with who, when and how (`via`)."""
    reason = f"opt-out ({revocation.channels}) via {revocation.via}, revocation#{revocation.id}"
    if revocation.note:
        reason = f"{reason}: {revocation.note}"
    dnc.add_internal(session, revocation.phone, reason=reason[:500], actor=actor, at=at, audit=audit,
                     via=revocation.via, revocation_id=revocation.id)


# --- business relationships -------------------------------------------------------------------

def add_business_relationship(session: Session, relationship_in: BusinessRelationshipIn, *, actor: str,
                              at: datetime, audit: Audit) -> Recorded[BusinessRelationship]:
    """Store a transaction and/or inquiry date with its seller; identical rows already on file are
    not repeated."""
    _require_aware("at", at)
    existing = session.scalars(select(BusinessRelationship).where(
        BusinessRelationship.phone == relationship_in.phone, BusinessRelationship.seller == relationship_in.seller,
        _equal_or_null(BusinessRelationship.last_transaction_at, relationship_in.last_transaction_at),
        _equal_or_null(BusinessRelationship.last_inquiry_at, relationship_in.last_inquiry_at))).first()
    if existing is not None:
        return Recorded(existing, False)
    relationship = BusinessRelationship(
        phone=relationship_in.phone, last_transaction_at=relationship_in.last_transaction_at,
        last_inquiry_at=relationship_in.last_inquiry_at, seller=relationship_in.seller,
        note=relationship_in.note, recorded_at=at, recorded_by=actor)
    session.add(relationship)
    session.flush()
    audit(session, actor=actor, action="consent.business_relationship", subject=relationship.phone,
          at=at, payload={"business_relationship_id": relationship.id, "seller": relationship.seller,
                          "last_transaction_at": _iso(relationship.last_transaction_at),
                          "last_inquiry_at": _iso(relationship.last_inquiry_at),
                          "note": relationship.note,
                          "row_digests": stored_digests(session, relationship)})
    return Recorded(relationship, True)


def _equal_or_null(column, value):
    return column.is_(None) if value is None else column == value


# --- importing a loaded file ------------------------------------------------------------------

@dataclass
class ImportSummary:
    loaded: dict[str, int] = field(default_factory=lambda: {
        "consent": 0, "revocation": 0, "business_relationship": 0})
    unchanged: dict[str, int] = field(default_factory=lambda: {
        "consent": 0, "revocation": 0, "business_relationship": 0})
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {"loaded": dict(self.loaded), "unchanged": dict(self.unchanged),
                "rejected": self.rejected, "errors": [error.as_dict() for error in self.errors]}


def import_loaded(session: Session, loaded: LoadedFile, *, source: str, actor: str, at: datetime,
                  audit: Audit) -> ImportSummary:
    """Store every good row of a loaded file; the file's bad rows are carried into the summary.

    Revocations commit as they are stored (see `revoke`), which also commits the rows before
    them; the caller commits the rest.
    """
    summary = ImportSummary(errors=list(loaded.errors))
    for row in loaded.rows:
        record = row.record
        try:
            created = _store(session, record, actor=actor, at=at, audit=audit)
        except LedgerError as error:
            summary.errors.append(RowError(row.line, str(error)))
            continue
        (summary.loaded if created else summary.unchanged)[record.type] += 1
    summary.errors.sort(key=lambda error: error.line)
    # Counts only: the rejected rows are in the summary the caller prints, and a file of a
    # million bad rows must not become one enormous audit event.
    audit(session, actor=actor, action="consent.imported", subject=None, at=at,
          payload={"source": source, "loaded": dict(summary.loaded), "unchanged": dict(summary.unchanged),
                   "rejected": summary.rejected})
    return summary


def _store(session: Session, record: ConsentIn | RevocationIn | BusinessRelationshipIn, *, actor: str,
           at: datetime, audit: Audit) -> bool:
    if isinstance(record, ConsentIn):
        return add_consent(session, record, actor=actor, at=at, audit=audit).created
    if isinstance(record, RevocationIn):
        return revoke(session, record.phone, record.channels, record.via, record.received_at,
                      actor=actor, at=at, audit=audit, note=record.note).created
    return add_business_relationship(session, record, actor=actor, at=at, audit=audit).created


# --- facts for the gate -----------------------------------------------------------------------

class BusinessDates(NamedTuple):
    last_transaction_at: datetime | None = None
    last_inquiry_at: datetime | None = None


class LedgerFacts(NamedTuple):
    """What the ledger tells the gate about one phone at one instant."""

    consents: tuple[ConsentGrant, ...] = ()
    revocations: tuple[RevocationFact, ...] = ()
    relationships: tuple[SellerRelationship, ...] = ()

    def fact_fields(self) -> dict[str, Any]:
        """The `consent.types.Facts` fields this ledger fills: `Facts(**fields, national_dnc=...)`.

        The business dates stay unset: a relationship exempts only its seller's campaigns, so
        `scheduler.facts.for_seller` fills in the campaign's seller's (none counts before that)."""
        return {"consents": self.consents, "revocations": self.revocations,
                "relationships": self.relationships}

    def ebr_of(self, seller: str | None) -> BusinessDates:
        return business_dates_of(self.relationships, seller)


def business_dates_of(relationships: Iterable[SellerRelationship], seller: str | None) -> BusinessDates:
    """The latest transaction and inquiry on file with `seller`; none for another seller, no
    seller, or the placeholder of relationships migrated without one (fail closed)."""
    mine = [r for r in relationships if same_seller(r.seller, seller)]
    return BusinessDates(max((r.last_transaction_at for r in mine if r.last_transaction_at), default=None),
                         max((r.last_inquiry_at for r in mine if r.last_inquiry_at), default=None))


def evidence_summary(record: ConsentRecord) -> str:
    """A short handle on the evidence: the record id, then the strongest proof on file."""
    evidence = record.evidence or {}
    for name, label, length in (("certificate_id", "cert", 80), ("disclosure_sha256", "sha256", 16),
                                ("source", "source", 40)):
        if evidence.get(name):
            return f"consent#{record.id} {label}={str(evidence[name])[:length]}"
    return f"consent#{record.id}"


def grant_of(record: ConsentRecord) -> ConsentGrant:
    return ConsentGrant(kind=ConsentKind(record.kind), channels=_channels(record.channels),
                        purposes=_purposes(record.purposes), granted_at=record.granted_at,
                        expires_at=record.expires_at, evidence=evidence_summary(record), seller=record.seller)


def of_seller(consents: Iterable[ConsentGrant], seller: str | None) -> tuple[ConsentGrant, ...]:
    """The consents obtained by `seller`: the only ones that count for its campaigns. None, or the
    placeholder of consents migrated without a seller, matches nothing."""
    return tuple(grant for grant in consents if same_seller(grant.seller, seller))


def revocation_fact(revocation: Revocation) -> RevocationFact:
    return RevocationFact(at=revocation.received_at, channels=_channels(revocation.channels),
                          via=revocation.via)


def current_records(records: Iterable[ConsentRecord]) -> list[ConsentRecord]:
    """The records no other record of the same scope supersedes, among those given.

    Derived from grant order rather than from the stored links, so that facts as of a past
    instant see the chain as it stood then (a supersession recorded later is not yet visible).
    """
    latest: dict[tuple, ConsentRecord] = {}
    for record in records:
        key = _scope_key(record)
        if key not in latest or (record.granted_at, record.id) > (latest[key].granted_at, latest[key].id):
            latest[key] = record
    return sorted(latest.values(), key=lambda record: (record.granted_at, record.id))


def _facts(consents: Iterable[ConsentRecord], revocations: Iterable[Revocation],
           relationships: Iterable[BusinessRelationship], at: datetime) -> LedgerFacts:
    grants = tuple(grant_of(record) for record in current_records(consents))
    facts = tuple(revocation_fact(revocation)
                  for revocation in sorted(revocations, key=lambda r: (r.received_at, r.id)))
    return LedgerFacts(grants, facts, _seller_relationships(relationships, at))


def _seller_relationships(relationships: Iterable[BusinessRelationship], at: datetime
                          ) -> tuple[SellerRelationship, ...]:
    """Per seller (compared as `same_seller` does), the latest transaction and inquiry dates at
    or before `at`: a date after `at` was not a fact at `at`."""
    dates: dict[str, list] = {}
    for row in sorted(relationships, key=lambda r: r.id or 0):
        key = seller_key(row.seller)
        if key is None:
            continue                 # the placeholder: a relationship with no known seller counts for none
        found = dates.setdefault(key, [row.seller, None, None])
        for index, instant in ((1, row.last_transaction_at), (2, row.last_inquiry_at)):
            if instant is not None and instant <= at and (found[index] is None or instant > found[index]):
                found[index] = instant
    return tuple(SellerRelationship(seller, transaction, inquiry)
                 for _key, (seller, transaction, inquiry) in sorted(dates.items())
                 if transaction is not None or inquiry is not None)


def facts_for(session: Session, phone_e164: str, at: datetime) -> LedgerFacts:
    """Consents, revocations and business dates for one phone as recorded at or before `at`."""
    return facts_for_many(session, [phone_e164], at)[phone_e164]


def facts_for_many(session: Session, phones: Sequence[str], at: datetime) -> dict[str, LedgerFacts]:
    """`facts_for` for a dispatch batch: one query per table (per 5000 phones), whatever its size.

    Every phone asked for gets an entry, empty when nothing is on file.
    """
    _require_aware("at", at)
    wanted = list(dict.fromkeys(phones))
    rows: dict[type, dict[str, list]] = {table: defaultdict(list)
                                         for table in (ConsentRecord, Revocation, BusinessRelationship)}
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start:start + _BATCH]
        for table, by_phone in rows.items():
            query = select(table).where(table.phone.in_(chunk), table.recorded_at <= at)
            for row in session.scalars(query):
                by_phone[row.phone].append(row)
    return {phone: _facts(rows[ConsentRecord][phone], rows[Revocation][phone],
                          rows[BusinessRelationship][phone], at)
            for phone in wanted}


# --- which consent the gate would rely on -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reliance:
    channel: Channel
    purpose: Purpose
    need: ConsentNeed
    grant: ConsentGrant | None       # None: nothing qualifies (or nothing is needed)
    reason: str

    def as_dict(self) -> dict[str, Any]:
        grant = self.grant
        return {"channel": self.channel.value, "purpose": self.purpose.value, "need": self.need.value,
                "seller": grant.seller if grant else None,
                "evidence": grant.evidence if grant else None,
                "kind": grant.kind.value if grant else None,
                "granted_at": _iso(grant.granted_at) if grant else None,
                "expires_at": _iso(grant.expires_at) if grant else None,
                "reason": self.reason}


def _satisfies(kind: ConsentKind, need: ConsentNeed) -> bool:
    return need is ConsentNeed.EXPRESS or kind is ConsentKind.WRITTEN


def _revoking(grant: ConsentGrant, channel: Channel, revocations: Iterable[RevocationFact],
              at: datetime) -> RevocationFact | None:
    """The latest revocation of `channel` received at or after the grant and at or before `at`."""
    hits = [r for r in revocations if channel in r.channels and grant.granted_at <= r.at <= at]
    return max(hits, key=lambda r: r.at, default=None)


def _why_not(grant: ConsentGrant, channel: Channel, need: ConsentNeed,
             revocations: Iterable[RevocationFact], at: datetime) -> str | None:
    """Why this grant does not count for (channel, need) at `at`; None when it counts."""
    if not _satisfies(grant.kind, need):
        return f"is {grant.kind.value}, {need.value} is needed"
    if grant.granted_at > at:
        return f"is granted only at {_iso(grant.granted_at)}"
    if grant.expires_at is not None and grant.expires_at <= at:
        return f"expired at {_iso(grant.expires_at)}"
    revocation = _revoking(grant, channel, revocations, at)
    if revocation is not None:
        return f"was revoked for {channel.value} at {_iso(revocation.at)} via {revocation.via}"
    return None


def relied_on(consents: Iterable[ConsentGrant], revocations: Iterable[RevocationFact], channel: Channel,
              purpose: Purpose, need: ConsentNeed, at: datetime) -> Reliance:
    """The consent the gate would rely on for (channel, purpose, need) at `at`, or why none qualifies.

    Pure. A consent counts when it has the right kind (written satisfies express), was granted at
    or before `at`, has not expired, covers the channel and the purpose, and was not revoked for
    the channel by a revocation received at or after its grant and at or before `at`. Among
    several, the most recently granted is named (written first on a tie): it is the one a
    reviewer would look at.
    """
    channel, purpose, need = Channel(channel), Purpose(purpose), ConsentNeed(need)
    if need is ConsentNeed.NONE:
        return Reliance(channel, purpose, need, None, "no consent is needed")
    covering = [g for g in consents if channel in g.channels and purpose in g.purposes]
    if not covering:
        return Reliance(channel, purpose, need, None,
                        f"no consent on file covers {channel.value} {purpose.value}")
    verdicts = [(grant, _why_not(grant, channel, need, revocations, at)) for grant in covering]
    counting = [grant for grant, why in verdicts if why is None]
    if counting:
        best = max(counting, key=lambda g: (g.granted_at, g.kind is ConsentKind.WRITTEN))
        return Reliance(channel, purpose, need, best,
                        f"{_label(best)}: {best.kind.value}, granted {_iso(best.granted_at)}, "
                        f"{'expires ' + _iso(best.expires_at) if best.expires_at else 'no expiry'}")
    details = "; ".join(f"{_label(grant)} {why}" for grant, why in verdicts)
    return Reliance(channel, purpose, need, None, f"none qualifies: {details}")


def _label(grant: ConsentGrant) -> str:
    """`consent#12` from the evidence handle; the grant instant for grants from elsewhere."""
    if grant.evidence and grant.evidence.startswith("consent#"):
        return grant.evidence.split(" ", 1)[0]
    return f"consent granted {_iso(grant.granted_at)}"


# --- history ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HistoryEvent:
    at: datetime                     # when it happened (granted, received, transacted)
    event: str                       # consent_granted | consent_superseded | revocation |
                                     # business_transaction | business_inquiry
    record: str                      # consent#12, revocation#3, business_relationship#4
    recorded_at: datetime
    recorded_by: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "event": self.event, "record": self.record,
                "recorded_at": _iso(self.recorded_at), "recorded_by": self.recorded_by,
                "detail": self.detail}


# Order of events at the same instant: a grant before what supersedes or revokes it.
_EVENT_ORDER = {"business_transaction": 0, "business_inquiry": 1, "consent_granted": 2,
                "consent_superseded": 3, "revocation": 4}


def _consent_events(records: list[ConsentRecord]) -> list[HistoryEvent]:
    by_id = {record.id: record for record in records}
    events = []
    for record in records:
        events.append(HistoryEvent(record.granted_at, "consent_granted", f"consent#{record.id}",
                                   record.recorded_at, record.recorded_by, {
                                       "kind": record.kind, "channels": record.channels.split(),
                                       "purposes": record.purposes.split(), "seller": record.seller,
                                       "brand": record.brand, "expires_at": _iso(record.expires_at),
                                       "evidence": _audited_evidence(record.evidence),
                                       "supersedes": _ref(record.supersedes_id),
                                       "superseded_by": _ref(record.superseded_by_id)}))
        successor = by_id.get(record.superseded_by_id)
        if successor is not None:
            events.append(HistoryEvent(successor.granted_at, "consent_superseded", f"consent#{record.id}",
                                       successor.recorded_at, successor.recorded_by,
                                       {"superseded_by": f"consent#{successor.id}"}))
    return events


def _ref(record_id: int | None) -> str | None:
    return None if record_id is None else f"consent#{record_id}"


def _revocation_events(revocations: list[Revocation]) -> list[HistoryEvent]:
    return [HistoryEvent(r.received_at, "revocation", f"revocation#{r.id}", r.recorded_at, r.recorded_by,
                         {"channels": r.channels.split(), "via": r.via, "note": r.note})
            for r in revocations]


def _relationship_events(relationships: list[BusinessRelationship]) -> list[HistoryEvent]:
    events = []
    for r in relationships:
        for event, instant in (("business_transaction", r.last_transaction_at),
                               ("business_inquiry", r.last_inquiry_at)):
            if instant is not None:
                events.append(HistoryEvent(instant, event, f"business_relationship#{r.id}", r.recorded_at,
                                           r.recorded_by, {"seller": r.seller, "note": r.note}))
    return events


def _rows(session: Session, table: type[T], phone: str) -> list[T]:
    return list(session.scalars(select(table).where(table.phone == phone).order_by(table.id)))


def history(session: Session, phone: str) -> list[HistoryEvent]:
    """Every grant, supersession, revocation and business date on file for a phone, in time order."""
    e164 = normalize_phone(phone)
    events = [*_consent_events(_rows(session, ConsentRecord, e164)),
              *_revocation_events(_rows(session, Revocation, e164)),
              *_relationship_events(_rows(session, BusinessRelationship, e164))]
    return sorted(events, key=lambda e: (e.at, _EVENT_ORDER[e.event], e.recorded_at, e.record))


# --- whether each consent is in force -----------------------------------------------------------

CONSENT_STATUSES = ("active", "not_yet_granted", "expired", "revoked", "superseded")


@dataclass(frozen=True, slots=True)
class ConsentStanding:
    """One consent on file and whether it is in force at an instant, in words a reviewer reads."""

    record: ConsentRecord
    status: str                          # one of CONSENT_STATUSES
    detail: str                          # "revoked for sms on 2026-07-10T12:00:00Z via sms_stop; ..."
    in_force_channels: tuple[Channel, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**consent_as_dict(self.record), "status": self.status, "status_detail": self.detail,
                "in_force_channels": [channel.value for channel in self.in_force_channels]}


def consent_standing(record: ConsentRecord, successor: ConsentRecord | None,
                     revocations: Sequence[RevocationFact], at: datetime) -> ConsentStanding:
    """Pure. Superseded, not yet granted, expired, revoked (for some or all of its channels, by a
    revocation received at or after its grant) or active, at `at`; whichever of expiry and
    revocation came first names the status. A consent revoked on one channel only stays in force
    on the others, and the detail says so."""
    if successor is not None:
        return ConsentStanding(record, "superseded", f"superseded by consent#{successor.id} granted "
                                                     f"{_iso(successor.granted_at)}", ())
    if record.granted_at > at:
        return ConsentStanding(record, "not_yet_granted", f"granted only at {_iso(record.granted_at)}", ())
    grant = grant_of(record)
    channels = [channel for channel in Channel if channel in grant.channels]
    revoked = {channel: found for channel in channels
               if (found := _revoking(grant, channel, revocations, at)) is not None}
    first_revoked = min((found.at for found in revoked.values()), default=None)
    if record.expires_at is not None and record.expires_at <= at and (
            first_revoked is None or record.expires_at <= first_revoked):
        return ConsentStanding(record, "expired", f"expired on {_iso(record.expires_at)}", ())
    in_force = tuple(channel for channel in channels if channel not in revoked)
    if revoked:
        parts = [f"revoked for {channel.value} on {_iso(found.at)} via {found.via}"
                 for channel, found in revoked.items()]
        if in_force:
            parts.append(f"still in force for {' '.join(channel.value for channel in in_force)}")
        return ConsentStanding(record, "revoked", "; ".join(parts), in_force)
    expiry = f"until {_iso(record.expires_at)}" if record.expires_at else "no expiry"
    return ConsentStanding(record, "active", f"in force since {_iso(record.granted_at)}, {expiry}", in_force)


def consent_standings(consents: Iterable[ConsentRecord], revocations: Iterable[Revocation],
                      at: datetime) -> list[ConsentStanding]:
    """The standing at `at` of every consent recorded by then, in grant order. A record is
    superseded by the next one granted in its scope (phone, seller, channels, purposes)."""
    on_file = sorted((record for record in consents if record.recorded_at <= at),
                     key=lambda record: (record.granted_at, record.id))
    facts = [revocation_fact(revocation) for revocation in revocations if revocation.recorded_at <= at]
    successors: dict[int, ConsentRecord] = {}
    latest: dict[tuple, ConsentRecord] = {}
    for record in on_file:
        older = latest.get(_scope_key(record))
        if older is not None:
            successors[older.id] = record
        latest[_scope_key(record)] = record
    return [consent_standing(record, successors.get(record.id), facts, at) for record in on_file]


# --- the view of one phone ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LedgerView:
    phone: str
    at: datetime
    events: tuple[HistoryEvent, ...]
    reliance: tuple[Reliance, ...]
    consents: tuple[ConsentStanding, ...] = ()
    seller: str | None = None            # the seller the view was narrowed to, if any

    def as_dict(self) -> dict[str, Any]:
        return {"phone": self.phone, "at": _iso(self.at), "seller": self.seller,
                "history": [event.as_dict() for event in self.events],
                "relied_on": [reliance.as_dict() for reliance in self.reliance],
                "consents": [standing.as_dict() for standing in self.consents]}


def ledger_view(session: Session, phone: str, at: datetime, *, channels: Sequence[Channel] = tuple(Channel),
                purposes: Sequence[Purpose] = tuple(Purpose), seller: str | None = None) -> LedgerView:
    """The history of a phone, each consent's standing and, per channel and purpose, the record
    the gate would rely on at `at`. Given a seller, consents are only that seller's: what the gate
    sees for its campaigns (the revocations stay, whoever they came through)."""
    e164 = normalize_phone(phone)
    facts = facts_for(session, e164, at)
    grants = facts.consents if seller is None else of_seller(facts.consents, seller)
    reliance = tuple(relied_on(grants, facts.revocations, channel, purpose, NEED_BY_PURPOSE[Purpose(purpose)], at)
                     for channel in channels for purpose in purposes)
    records_on_file = [record for record in _rows(session, ConsentRecord, e164)
                       if seller is None or same_seller(record.seller, seller)]
    standings = consent_standings(records_on_file, _rows(session, Revocation, e164), at)
    return LedgerView(e164, at, tuple(history(session, e164)), reliance, tuple(standings), seller)


def consent_as_dict(record: ConsentRecord) -> dict[str, Any]:
    return {"id": record.id, "phone": record.phone, "kind": record.kind,
            "channels": record.channels.split(), "purposes": record.purposes.split(),
            "seller": record.seller, "brand": record.brand, "granted_at": _iso(record.granted_at),
            "expires_at": _iso(record.expires_at), "evidence": record.evidence,
            "supersedes": _ref(record.supersedes_id), "superseded_by": _ref(record.superseded_by_id),
            "recorded_at": _iso(record.recorded_at), "recorded_by": record.recorded_by}


def revocation_as_dict(revocation: Revocation) -> dict[str, Any]:
    return {"id": revocation.id, "phone": revocation.phone, "channels": revocation.channels.split(),
            "via": revocation.via, "received_at": _iso(revocation.received_at), "note": revocation.note,
            "recorded_at": _iso(revocation.recorded_at), "recorded_by": revocation.recorded_by}


def business_relationship_as_dict(relationship: BusinessRelationship) -> dict[str, Any]:
    return {"id": relationship.id, "phone": relationship.phone, "seller": relationship.seller,
            "last_transaction_at": _iso(relationship.last_transaction_at),
            "last_inquiry_at": _iso(relationship.last_inquiry_at), "note": relationship.note,
            "recorded_at": _iso(relationship.recorded_at), "recorded_by": relationship.recorded_by}
