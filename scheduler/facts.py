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
from consent.types import Channel, Facts, NationalDnc, PriorAttempt
from outbound.models import Attempt, Contact

HISTORY_WINDOW = timedelta(hours=24)     # the longest cap period in the rule pack (FL, OK, MD)
HISTORY_LOOKUP_BATCH = 500


class NationalRegistry(Protocol):
    def national_fact(self, phone: str) -> dict: ...


def load_batch_facts(session: Session, phones: Sequence[str], at: datetime,
                     registry: NationalRegistry) -> dict[str, Facts]:
    """`{e164: Facts}` for every phone given, as known at `at`. The consents are every seller's
    (a batch mixes campaigns): narrow them with `for_seller` before asking the gate."""
    wanted = list(dict.fromkeys(phones))
    ledger = records.facts_for_many(session, wanted, at)
    listings = dnc.sources_listing_many(session, wanted)
    history = dialed_history(session, wanted, at)
    return {phone: Facts(**ledger[phone].fact_fields(),
                         national_dnc=national_dnc(registry.national_fact(phone)),
                         state_dnc=tuple(sorted(listings[phone]["state"])),
                         internal_dnc=bool(listings[phone]["internal"]),
                         litigator=bool(listings[phone]["litigator"]),
                         history=history.get(phone, ()))
            for phone in wanted}


def for_seller(facts: Facts, seller: str) -> Facts:
    """The facts of one campaign's attempt: only consents obtained by the campaign's seller count
    (DESIGN.md, Invariants). Revocations stay whoever obtained the consent: an opt-out stops
    every campaign's attempts on its channel, the fail-closed reading of a do-not-call request."""
    return replace(facts, consents=records.of_seller(facts.consents, seller))


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
