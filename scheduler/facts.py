"""Facts for a dispatch batch, loaded once for the whole batch.

Sources: the consent ledger (`consent.records.facts_for_many`: consents, revocations, business
relationship dates), the SQL do-not-call lists (`consent.dnc.sources_listing_many`: internal,
state, litigator), the national registry's compact store (`consent.registry_store`), and the
attempts table for history (attempts dialed to the same number in the 24 hours before `at`, on
both channels, in every campaign: the state caps count per called party).

Any error here propagates: dispatch then dials nothing from the batch (fail closed).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlmodel import Session

from consent import dnc, records
from consent.ledger_io import same_seller
from consent.types import Channel, Facts, NationalDnc, PriorAttempt, RevocationFact
from outbound import opt_out_journal
from outbound.models import Attempt, Contact
from outbound.settings import get_settings

HISTORY_WINDOW = timedelta(hours=24)     # the longest cap period in the rule pack (FL, OK, MD)
HISTORY_LOOKUP_BATCH = 500


class NationalRegistry(Protocol):
    def national_fact(self, phone: str) -> dict: ...


def load_batch_facts(session: Session, phones: Sequence[str], at: datetime,
                     registry: NationalRegistry) -> dict[str, Facts]:
    """`{e164: Facts}` for every phone given, as known at `at`. The consents and business
    relationships are every seller's (a batch mixes campaigns), and no business date is set yet:
    `for_seller` narrows them to one campaign's before asking the gate."""
    wanted = list(dict.fromkeys(phones))
    ledger = records.facts_for_many(session, wanted, at)
    listings = dnc.sources_listing_many(session, wanted)
    history = dialed_history(session, wanted, at)
    journaled = journaled_revocations(wanted)
    return {phone: Facts(**_with_journaled(ledger[phone].fact_fields(), journaled.get(phone, ())),
                         national_dnc=national_dnc(registry.national_fact(phone)),
                         state_dnc=tuple(sorted(listings[phone]["state"])),
                         internal_dnc=bool(listings[phone]["internal"]) or phone in journaled,
                         litigator=bool(listings[phone]["litigator"]),
                         history=history.get(phone, ()))
            for phone in wanted}


def journaled_revocations(phones: Sequence[str]) -> dict[str, tuple[RevocationFact, ...]]:
    """Opt-outs received but still waiting in the journal for the database
    (`outbound.opt_out_journal`), as the revocations and internal-list entries they will be
    once stored: until then the gate blocks their numbers just as it will after. An unreadable
    journal raises, and dispatch sends nothing from the batch."""
    wanted = set(phones)
    found: dict[str, list[RevocationFact]] = defaultdict(list)
    for record in opt_out_journal.pending(get_settings().data_dir):
        if record.phone in wanted:
            found[record.phone].append(RevocationFact(at=record.received_at, via=record.via,
                                                      channels=frozenset(Channel(c) for c in record.channels)))
    return {phone: tuple(facts) for phone, facts in found.items()}


def _with_journaled(fields: dict, journaled: tuple[RevocationFact, ...]) -> dict:
    if not journaled:
        return fields
    return {**fields, "revocations": tuple(sorted(fields["revocations"] + journaled, key=lambda r: r.at))}


def for_seller(facts: Facts, seller: str) -> Facts:
    """The facts of one campaign's attempt: only consents obtained by the campaign's seller count
    (DESIGN.md, Invariants), and only a business relationship with that seller exempts from the
    national list (47 CFR 64.1200(f)(5)). Revocations stay whoever obtained the consent: an
    opt-out stops every campaign's attempts on its channel, the fail-closed reading of a
    do-not-call request."""
    relationships = tuple(r for r in facts.relationships if same_seller(r.seller, seller))
    ebr = records.business_dates_of(relationships, seller)
    return replace(facts, consents=records.of_seller(facts.consents, seller), relationships=relationships,
                   last_transaction_at=ebr.last_transaction_at, last_inquiry_at=ebr.last_inquiry_at)


def national_dnc(fact: dict) -> NationalDnc | None:
    """The registry's answer as the gate's fact, dated by the number's own area code; None (the
    gate's `synced_at: null`, so it fails closed for telemarketing) when that area code has no
    registry data: never loaded, or the store is empty."""
    synced_at = fact.get("synced_at")
    if synced_at is None:
        return None
    if isinstance(synced_at, str):
        synced_at = datetime.fromisoformat(synced_at.replace("Z", "+00:00"))
    if synced_at.tzinfo is None:
        raise ValueError(f"national registry synced_at {synced_at!r} has no time zone")
    return NationalDnc(listed=bool(fact["listed"]), registered_on=fact.get("registered_on"),
                       synced_at=synced_at)


def dialed_history(session: Session, phones: Iterable[str], at: datetime) -> dict[str, tuple[PriorAttempt, ...]]:
    """Attempts handed to the carrier (dispatched_at set) for each number in the 24 hours
    before `at`. An attempt whose outcome is unknown counts: it may have rung."""
    found: dict[str, list[PriorAttempt]] = defaultdict(list)
    ordered = sorted(set(phones))
    for start in range(0, len(ordered), HISTORY_LOOKUP_BATCH):
        chunk = ordered[start:start + HISTORY_LOOKUP_BATCH]
        statement = (select(Contact.e164, Attempt.dispatched_at, Attempt.channel)
                     .join(Contact, Contact.id == Attempt.contact_id)
                     .where(Contact.e164.in_(chunk), Attempt.dispatched_at.is_not(None),
                            Attempt.dispatched_at > at - HISTORY_WINDOW, Attempt.dispatched_at <= at)
                     .order_by(Attempt.dispatched_at, Attempt.id))
        for phone, dispatched_at, channel in session.execute(statement):
            found[phone].append(PriorAttempt(at=dispatched_at, channel=Channel(channel)))
    return {phone: tuple(items) for phone, items in found.items()}
