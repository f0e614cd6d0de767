"""keyed audit and row hashes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:00:00

Until this revision each audit event's hash was sha256 of its canonical JSON: anyone who could
write the database could edit an event and recompute every later hash. From here on it is
HMAC-SHA256 under the audit key (outbound.audit_key: OUTBOUND_AUDIT_KEY, OUTBOUND_AUDIT_KEY_FILE
or audit.key in the data directory), and events that change fact rows carry their digests.

Upgrading an existing chain:
1. The unkeyed chain is verified exactly as the old `audit verify` did. If it is broken, the
   upgrade is REFUSED (nothing changes) with the event named: re-keying a tampered chain would
   launder it. Restore the database from a backup, or investigate, before upgrading.
2. Every event is re-hashed with the key, in id order; the head and its key id follow.
3. An `audit.rekeyed` event records the old chain's last id and sha256, then `audit.rows_baseline`
   events record the digest of every consent, revocation, business-relationship and DNC row on
   file (2000 rows an event), so those rows are checked from now on like new ones.

No event is ever trusted for being "legacy": after this revision verify knows one kind of
event, keyed. A fresh database (no events, no fact rows) needs no key here.

Downgrade verifies the keyed chain and writes it back as sha256 (the events added here stay).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlmodel import Session

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
PAGE = 10_000                  # events read, checked and rewritten at a time
BASELINE_ROWS = 2000           # row digests per baseline event
ACTOR = "migration 0006"

_events = sa.table("audit_events", sa.column("id", sa.Integer))
_head = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("last_id", sa.Integer),
                 sa.column("last_hash", sa.String), sa.column("key_id", sa.String))


class AuditUpgradeRefused(RuntimeError):
    """The stored chain is broken: the migration will not re-key it."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    op.add_column('audit_head', sa.Column('key_id', sa.String(), nullable=True))
    connection = op.get_bind()
    has_events = connection.execute(sa.select(sa.func.count()).select_from(_events)).scalar_one() > 0
    if not has_events and not _fact_rows(connection):
        return
    from outbound.audit_key import current_key, keyed_hash
    key = current_key()
    last_id, legacy_hash = _rehash(connection, _sha256, lambda text: keyed_hash(key, text),
                                   what="unkeyed sha256")
    connection.execute(sa.update(_head).values(key_id=key.key_id))
    _baseline(connection, legacy_id=last_id, legacy_hash=legacy_hash, key_id=key.key_id)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.execute(sa.select(sa.func.count()).select_from(_events)).scalar_one():
        from outbound.audit_key import current_key, keyed_hash
        key = current_key()
        _rehash(connection, lambda text: keyed_hash(key, text), _sha256, what="keyed")
    with op.batch_alter_table('audit_head') as batch:
        batch.drop_column('key_id')


def _fact_rows(connection) -> bool:
    from consent.row_digest import AUDITED_TABLES
    return any(connection.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
               for name in AUDITED_TABLES)


def _rehash(connection, old: Callable[[str], str], new: Callable[[str], str], *,
            what: str) -> tuple[int, str]:
    """Verify the chain under `old` and rewrite it under `new`, a page at a time; returns the
    last id and its `old` hash. Raises AuditUpgradeRefused at the first broken link."""
    from outbound.audit import _at_iso_sql, event_text
    from outbound.models import AuditEvent
    events = AuditEvent.__table__          # the columns _at_iso_sql spells `at` from
    at_iso = _at_iso_sql(connection.dialect.name)
    last_id, old_last, new_last = 0, GENESIS_HASH, GENESIS_HASH
    while True:
        page = connection.execute(
            sa.select(events.c.id, at_iso, events.c.actor, events.c.action, events.c.subject,
                      events.c.payload, events.c.prev_hash, events.c.hash)
            .where(events.c.id > last_id).order_by(events.c.id).limit(PAGE)).all()
        if not page:
            break
        updates = []
        for event_id, at, actor, action, subject, payload, prev_hash, stored in page:
            text = event_text(event_id, at, actor, action, subject, payload, prev_hash)
            if event_id != last_id + 1 or prev_hash != old_last or stored != old(text):
                _refuse(f"event {event_id} does not verify as a {what} chain (after event {last_id})")
            new_hash = new(event_text(event_id, at, actor, action, subject, payload, new_last))
            updates.append({"b_id": event_id, "b_prev": new_last, "b_hash": new_hash})
            last_id, old_last, new_last = event_id, stored, new_hash
        connection.execute(sa.update(events).where(events.c.id == sa.bindparam("b_id"))
                           .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash")),
                           updates)
    head = connection.execute(sa.select(_head.c.last_id, _head.c.last_hash)).one_or_none()
    if last_id and (head is None or (head.last_id, head.last_hash) != (last_id, old_last)):
        _refuse(f"the audit head does not name the last event {last_id} (events cut or added)")
    if head is not None:
        connection.execute(sa.update(_head).values(last_hash=new_last))
    return last_id, old_last


def _refuse(why: str) -> None:
    raise AuditUpgradeRefused(
        f"upgrade to 0006 refused: the stored audit chain is broken: {why}. Re-keying it would "
        "make the tampering invisible. Restore the database from a backup taken before the "
        "break (or investigate with `outbound audit verify` on the previous version), then upgrade.")


def _baseline(connection, *, legacy_id: int, legacy_hash: str, key_id: str) -> None:
    """The rekeyed event, then the digest of every fact row on file, through the audit's own
    append (keyed, head locked) in this migration's transaction."""
    from consent.row_digest import AUDITED_TABLES, row_digest
    from outbound.audit import append
    at = datetime.now(timezone.utc)
    with Session(bind=connection) as session:
        append(session, actor=ACTOR, action="audit.rekeyed", subject=None, at=at, payload={
            "legacy_last_id": legacy_id, "legacy_last_sha256": legacy_hash, "key_id": key_id})
        for name, table in AUDITED_TABLES.items():
            existing = {column["name"] for column in sa.inspect(connection).get_columns(name)}
            columns = [column for column in table.columns if column.name in existing]
            digests: dict[str, str] = {}
            for row in connection.execute(sa.select(*columns).order_by(table.c.id)):
                digests[str(row.id)] = row_digest(row._mapping)
                if len(digests) == BASELINE_ROWS:
                    _baseline_event(session, append, name, digests, at)
                    digests = {}
            if digests:
                _baseline_event(session, append, name, digests, at)
        session.flush()


def _baseline_event(session, append, table: str, digests: dict[str, str], at: datetime) -> None:
    append(session, actor=ACTOR, action="audit.rows_baseline", subject=table, at=at,
           payload={"row_digests": {table: digests}})
