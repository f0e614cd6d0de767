"""The append-only, hash-chained audit log, keyed.

Each event's hash covers its own content and the hash of the event before it:

    hash = HMAC-SHA256(key, canonical_json({id, at, actor, action, subject, payload, prev_hash}))

with `at` in ISO 8601 UTC ending in `Z` and the first event's prev_hash 64 zeros. The key is
kept outside the database (`outbound.audit_key`): someone who can write the database but does
not hold the key cannot recompute the chain after an edit. The single
`audit_head` row holds the id and hash of the last event: it serialises appends and lets `verify`
notice events cut from the end, which no link inside the chain could reveal.

`append` is also the callback other packages receive (`consent` may not import `outbound`), so
its signature is the contract:

    append(session, *, actor, action, subject, payload, at) -> AuditEvent

It writes inside the caller's transaction and does not commit: the event is stored if and only
if the change it records is.

What the chain proves: any edit, deletion, insertion or reordering of stored events is found,
unless whoever made it also held the key and recomputed every later hash and the head. An
anchor closes that gap too: `outbound audit anchor` prints the head (id and hash) for compliance
to keep outside the system, and `verify(anchor=...)` then proves nothing up to it changed.

What it protects besides itself: every consent, revocation, business-relationship and DNC
change carries the digest of the rows it wrote (`consent.row_digest`); `verify` re-reads those
tables and reports each row that differs from, lacks, or was removed after its audit event
(`outbound.audit_rows`).

Chains written before migration 0006 were unkeyed sha256: that migration verified them, re-keyed
every event and recorded the digest of every fact row then on file; it refuses to upgrade a
broken chain. There is no "legacy" event kind an attacker could write.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, String, func, insert, select, type_coerce
from sqlmodel import Session

from outbound import audit_rows
from outbound.audit_key import AuditKey, current_key, keyed_hash
from outbound.db import insert_ignoring_duplicates
from outbound.models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64
HEAD_ID = 1
VERIFY_BATCH = 10_000      # rows fetched per round trip while verifying; memory stays flat


# --- canonical JSON ---------------------------------------------------------------------------

def canonical_json(value: Any) -> str:
    """The one serialisation hashes and stored decisions are computed over: sorted keys, no
    whitespace, UTF-8 kept as is. Aware datetimes become ISO UTC with `Z`; anything else that
    JSON cannot hold is refused rather than stringified, so the text is a faithful record."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in canonical JSON: "
                    "convert it to a string, number, list or dict first")


def iso_utc(at: datetime) -> str:
    """`2026-07-15T16:00:00.000000Z`: always microseconds, so one instant has one spelling."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: audit instants need a time zone (UTC)")
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-len("+00:00")] + "Z"


def event_hash(*, id: int, at: datetime, actor: str, action: str, subject: str | None,
               payload: Any, prev_hash: str, key: AuditKey | None = None) -> str:
    """HMAC-SHA256 under `key` (default: the configured key) of
    canonical_json({id, at, actor, action, subject, payload, prev_hash})."""
    return _hash_event_text(key or current_key(), id, iso_utc(at), actor, action, subject,
                            canonical_json(payload), prev_hash)


# The string encoder json.dumps(ensure_ascii=False) itself uses (the C one when available).
_json_string = json.encoder.encode_basestring


def _hash_event_text(key: AuditKey, event_id: int, at_iso: str, actor: str, action: str,
                     subject: str | None, payload_json: str, prev_hash: str) -> str:
    return keyed_hash(key, event_text(event_id, at_iso, actor, action, subject, payload_json,
                                      prev_hash))


def event_text(event_id: int, at_iso: str, actor: str, action: str, subject: str | None,
               payload_json: str, prev_hash: str) -> str:
    """canonical_json of the event, written out key by key in sorted order (action, actor, at,
    id, payload, prev_hash, subject) with the stored canonical payload spliced in as is, so
    verify hashes a million events without parsing and re-serialising every payload.
    test_audit checks this equals canonical_json(document) on arbitrary content."""
    return "".join((
        '{"action":', _json_string(action), ',"actor":', _json_string(actor),
        ',"at":"', at_iso, '","id":', str(event_id), ',"payload":', payload_json,
        ',"prev_hash":', _json_string(prev_hash),
        ',"subject":', "null" if subject is None else _json_string(subject), "}",
    ))


# --- append -----------------------------------------------------------------------------------

def append(session: Session, *, actor: str, action: str, subject: str | None, payload: dict,
           at: datetime) -> AuditEvent:
    """Add one event at the end of the chain, in the caller's transaction (flushed, not
    committed). Concurrent appenders queue on the head row, so ids and links never fork."""
    payload_json = canonical_json(payload)
    at = _as_utc(at)
    key = current_key()
    head = _lock_head(session, key)
    event_id = head.last_id + 1
    digest = _hash_event_text(key, event_id, iso_utc(at), actor, action, subject, payload_json,
                              head.last_hash)
    event = AuditEvent(id=event_id, at=at, actor=actor, action=action, subject=subject,
                       payload=payload_json, prev_hash=head.last_hash, hash=digest)
    head.last_id, head.last_hash = event_id, digest
    session.add(event)
    session.add(head)
    session.flush()
    return event


@dataclass(frozen=True)
class NewEvent:
    """One event for `append_many`."""

    actor: str
    action: str
    subject: str | None
    payload: dict
    at: datetime


def append_many(session: Session, events: list[NewEvent]) -> list[int]:
    """Add `events` at the end of the chain, in order, in the caller's transaction; returns their
    ids. One locked head and one multi-row INSERT for the lot: a dispatch batch holds the head
    (which every appender queues on) for milliseconds instead of one flush per event."""
    if not events:
        return []
    key = current_key()
    head = _lock_head(session, key)
    rows, last_id, last_hash = [], head.last_id, head.last_hash
    for event in events:
        at = _as_utc(event.at)
        payload_json = canonical_json(event.payload)
        last_id += 1
        digest = _hash_event_text(key, last_id, iso_utc(at), event.actor, event.action,
                                  event.subject, payload_json, last_hash)
        rows.append({"id": last_id, "at": at, "actor": event.actor, "action": event.action,
                     "subject": event.subject, "payload": payload_json, "prev_hash": last_hash,
                     "hash": digest})
        last_hash = digest
    session.execute(insert(AuditEvent.__table__), rows)
    head.last_id, head.last_hash = last_id, last_hash
    session.add(head)
    session.flush()
    return [row["id"] for row in rows]


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: audit instants need a time zone (UTC)")
    return at.astimezone(timezone.utc)


def _lock_head(session: Session, key: AuditKey) -> AuditHead:
    # Once locked, the head stays ours until this transaction ends: later appends in the same
    # transaction (a dispatch batch) reuse it instead of locking it again.
    transaction = session.get_transaction()
    held = session.info.get(_HELD_HEAD)
    if transaction is not None and held is not None and held[0] is transaction:
        return held[1]
    # The insert comes first on purpose: on SQLite it is the statement that takes the write
    # lock, so the head read below cannot be stale; on PostgreSQL it creates the head once even
    # when the first two appends race. FOR UPDATE then holds the head until the caller commits.
    insert_ignoring_duplicates(session, AuditHead.__table__, {
        "id": HEAD_ID, "last_id": 0, "last_hash": GENESIS_HASH, "key_id": key.key_id})
    head = session.execute(_LOCK_HEAD).scalar_one()
    if head.key_id is None:
        # A head from before keys (no events yet at the upgrade): the chain begins here. A wrong
        # key is never refused: an opt-out must be stored whatever; verify reports the key.
        head.key_id = key.key_id
    session.info[_HELD_HEAD] = (session.get_transaction(), head)
    return head


_HELD_HEAD = "outbound.audit.held_head"
# Built once: every append in every transaction runs it.
_LOCK_HEAD = (select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
              .execution_options(populate_existing=True))


# --- verify -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    reason: str
    expected_hash: str | None = None
    found_hash: str | None = None


@dataclass(frozen=True)
class Anchor:
    """A head published earlier (`outbound audit anchor`): event `id` had hash `hash`."""

    id: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> "Anchor":
        """`ID:HASH` as `audit anchor` prints it; ValueError naming what is wrong."""
        event_id, sep, digest = text.strip().partition(":")
        digest = digest.strip().lower()
        if (not sep or not event_id.strip().isdigit() or int(event_id) < 1 or len(digest) != 64
                or any(c not in "0123456789abcdef" for c in digest)):
            raise ValueError(f"anchor {text!r}: expected ID:HASH as `outbound audit anchor` prints "
                             "it, e.g. 1234:followed-by-64-hex-digits")
        return cls(int(event_id), digest)

    def __str__(self) -> str:
        return f"{self.id}:{self.hash}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events_checked: int
    last_id: int                       # id of the last event read (0 when there is none)
    broken: BrokenLink | None = None
    # The fact rows (consent, revocations, business relationships, DNC) against their events;
    # None when not checked (a broken chain's events cannot vouch for any row).
    rows: audit_rows.RowCheck | None = None
    anchor: dict | None = None         # {"id", "hash", "ok"} when an anchor was given

    def to_dict(self) -> dict:
        result = asdict(self)
        if self.rows is not None:
            result["rows"]["ok"] = self.rows.ok
        return result


def head(session: Session) -> Anchor | None:
    """The current head as an anchor (None when nothing was ever appended). It is only worth
    keeping once `verify` says the chain is intact."""
    row = session.execute(select(AuditHead.last_id, AuditHead.last_hash)
                          .where(AuditHead.id == HEAD_ID)).one_or_none()
    return None if row is None or row.last_id == 0 else Anchor(row.last_id, row.last_hash)


def verify(session: Session, *, anchor: Anchor | None = None, key: AuditKey | None = None,
           check_rows: bool = True) -> VerifyResult:
    """Walk the chain once, in id order, streaming rows; stop at the first broken link. Then,
    if the chain is intact, check the fact rows against the digests its events recorded.

    Checks, for each event: its id follows the previous one, its prev_hash is the previous
    event's hash, and its hash is the keyed hash of its content; then that the head names the
    last event, and that event `anchor.id` still has the anchored hash. Reads one snapshot (see
    `_begin_snapshot`), so changes committed meanwhile are not mistaken for tampering."""
    key = key or current_key()
    _begin_snapshot(session)
    head_row = session.execute(select(AuditHead.last_id, AuditHead.last_hash, AuditHead.key_id)
                               .where(AuditHead.id == HEAD_ID)).one_or_none()
    wrong_key = _check_key(head_row, key)
    if wrong_key is not None:
        return VerifyResult(ok=False, events_checked=0, last_id=0, broken=wrong_key,
                            anchor=_anchor_dict(anchor, False))
    expectations = audit_rows.Expectations()
    checked, last_id, last_hash, anchored = 0, 0, GENESIS_HASH, None
    for row in _stream_events(session):
        event_id, at_iso, actor, action, subject, payload_json, prev_hash, stored_hash = row
        # The common case (an intact link) costs one hash and three comparisons; the ordered
        # diagnosis runs only once, on the first link that fails.
        if (event_id != last_id + 1 or prev_hash != last_hash or stored_hash != _hash_event_text(
                key, event_id, at_iso, actor, action, subject, payload_json, prev_hash)):
            broken = _diagnose(key, row, expected_id=last_id + 1, prev_hash=last_hash)
            return VerifyResult(ok=False, events_checked=checked, last_id=last_id, broken=broken,
                                anchor=_anchor_dict(anchor, None))
        if audit_rows.carries_rows(payload_json):
            expectations.add(event_id, payload_json)
        if anchor is not None and event_id == anchor.id:
            anchored = stored_hash
        checked, last_id, last_hash = checked + 1, event_id, stored_hash
    broken = _check_head(head_row, last_id=last_id, last_hash=last_hash)
    if broken is None and anchor is not None:
        broken = _check_anchor(anchor, anchored, last_id)
    rows = audit_rows.check(session, expectations) if broken is None and check_rows else None
    ok = broken is None and (rows is None or rows.ok)
    return VerifyResult(ok=ok, events_checked=checked, last_id=last_id, broken=broken, rows=rows,
                        anchor=_anchor_dict(anchor, None if anchor is None else broken is None))


def _check_key(head_row: Any, key: AuditKey) -> BrokenLink | None:
    if head_row is None or head_row.key_id is None or head_row.key_id == key.key_id:
        return None
    return BrokenLink(1, f"the audit key in use ({key.source}, key id {key.key_id}) is not the key "
                         f"this chain was written with (key id {head_row.key_id}): set "
                         "OUTBOUND_AUDIT_KEY or OUTBOUND_AUDIT_KEY_FILE to that key")


def _check_anchor(anchor: Anchor, anchored: str | None, last_id: int) -> BrokenLink | None:
    if anchored is None:
        return BrokenLink(anchor.id, f"anchored event {anchor.id} is gone: the last event is "
                                     f"{last_id} (events cut and the chain rebuilt)",
                          expected_hash=anchor.hash)
    if anchored != anchor.hash:
        return BrokenLink(anchor.id, f"event {anchor.id} does not have the anchored hash (the chain "
                                     "up to it was rewritten with the key)",
                          expected_hash=anchor.hash, found_hash=anchored)
    return None


def _anchor_dict(anchor: Anchor | None, ok: bool | None) -> dict | None:
    return None if anchor is None else {"id": anchor.id, "hash": anchor.hash, "ok": ok}


def _begin_snapshot(session: Session) -> None:
    # Events and head must come from one snapshot, or an append committed between the two reads
    # looks like a row added behind the head's back. PostgreSQL: REPEATABLE READ (only possible
    # before the session's transaction starts; a caller already inside one owns its isolation).
    # SQLite: pysqlite runs SELECTs outside any transaction, so open one explicitly.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    elif dialect == "sqlite":
        connection = session.connection()
        if not connection.connection.dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN")


def _stream_events(session: Session) -> Iterator[Any]:
    # Core rows on the session's connection (the ORM adds ~1 µs a row), fetched VERIFY_BATCH at
    # a time (a server-side cursor on PostgreSQL), with `at` already spelled as iso_utc spells it.
    statement = (select(AuditEvent.id, _at_iso_sql(session.get_bind().dialect.name),
                        AuditEvent.actor, AuditEvent.action, AuditEvent.subject,
                        AuditEvent.payload, AuditEvent.prev_hash, AuditEvent.hash)
                 .order_by(AuditEvent.id).execution_options(yield_per=VERIFY_BATCH))
    yield from session.connection().execute(statement)


def _at_iso_sql(dialect: str) -> ColumnElement[str]:
    """`at` as iso_utc() would format it, computed by the database: parsing a million
    timestamps into datetimes only to print them again would double the time verify takes."""
    raw_at = type_coerce(AuditEvent.at, String)            # skip UTCDateTime's conversion
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", AuditEvent.at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    if dialect == "sqlite":
        # SQLAlchemy stores SQLite datetimes as text, "YYYY-MM-DD HH:MM:SS.ffffff" (UTC, see
        # UTCDateTime); test_audit checks this agrees with iso_utc().
        return func.replace(raw_at, " ", "T").concat("Z")
    raise NotImplementedError(f"audit verify: unsupported database {dialect!r}")


def _diagnose(key: AuditKey, row: Any, *, expected_id: int, prev_hash: str) -> BrokenLink:
    event_id, at_iso, actor, action, subject, payload_json, found_prev_hash, stored_hash = row
    # Order matters: a missing id explains everything after it; a bad link on a row that is
    # otherwise intact means a row was removed or slipped in before this one; only a row that
    # links correctly but does not hash to its stored value was edited in place.
    if event_id != expected_id:
        cause = " (rows deleted before it)" if event_id > expected_id else ""
        return BrokenLink(event_id, f"id gap: expected event {expected_id}, found {event_id}{cause}")
    if found_prev_hash != prev_hash:
        return BrokenLink(event_id, f"prev_hash does not match event {expected_id - 1} "
                                    "(row deleted or inserted before it)",
                          expected_hash=prev_hash, found_hash=found_prev_hash)
    recomputed = _hash_event_text(key, event_id, at_iso, actor, action, subject, payload_json,
                                  found_prev_hash)
    return BrokenLink(event_id, "hash mismatch (row edited)",
                      expected_hash=recomputed, found_hash=stored_hash)


def _check_head(head: Any, *, last_id: int, last_hash: str) -> BrokenLink | None:
    if head is None:
        if last_id == 0:
            return None                          # nothing was ever appended
        return BrokenLink(last_id, f"audit head row is missing but events exist up to {last_id}")
    if head.last_id > last_id:
        return BrokenLink(last_id + 1, f"head points to {head.last_id} but last event is {last_id} "
                                       "(rows cut from the end)",
                          expected_hash=head.last_hash, found_hash=last_hash)
    if head.last_id < last_id:
        return BrokenLink(head.last_id + 1, f"head points to {head.last_id} but last event is "
                                            f"{last_id} (rows added without moving the head)",
                          expected_hash=head.last_hash, found_hash=last_hash)
    if head.last_hash != last_hash:
        return BrokenLink(last_id, f"head hash does not match event {last_id} "
                                   "(last event or head replaced)",
                          expected_hash=head.last_hash, found_hash=last_hash)
    return None


# --- reading ----------------------------------------------------------------------------------

def recent_events(session: Session, limit: int = 20) -> list[AuditEvent]:
    """The last `limit` events, oldest first."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    return list(reversed(session.execute(statement).scalars().all()))
