"""business relationship belongs to a seller

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00

An established business relationship is with one seller (47 CFR 64.1200(f)(5)) and now exempts
only that seller's campaigns from the national DNC list, so every business_relationships row
names one (the column becomes NOT NULL). Rows recorded without a seller get, as migration 0005
gave consents:
- the seller of the one campaign on file, when exactly one exists (its conversation seller_name,
  else its name), since the relationship can only have been recorded for it;
- otherwise "unknown" (consent.ledger_io.UNKNOWN_SELLER), which matches no campaign: those
  relationships stop exempting anyone until they are imported again naming their seller
  (fail closed: the national list then applies).
Rows that already named a seller keep it.

The rows are audited (migration 0006): the filled rows' new digests go into one audit event, so
`audit verify` keeps matching them to what the audit recorded.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlmodel import Session


revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWN_SELLER = "unknown"     # a copy: a migration must not change when the code does
ACTOR = "migration 0007"
TABLE = "business_relationships"


def _campaign_seller(name: str, settings) -> str:
    if isinstance(settings, str):
        settings = json.loads(settings or "{}")
    seller_name = ((settings or {}).get("conversation") or {}).get("seller_name")
    return seller_name or name


def _seller_for_unnamed_rows(connection) -> str:
    campaigns = connection.execute(sa.text("SELECT name, settings FROM campaigns")).all()
    if len(campaigns) != 1:
        return UNKNOWN_SELLER
    return _campaign_seller(*campaigns[0])


def upgrade() -> None:
    connection = op.get_bind()
    unnamed = [row_id for (row_id,) in connection.execute(sa.text(
        f"SELECT id FROM {TABLE} WHERE seller IS NULL OR TRIM(seller) = '' ORDER BY id"))]
    if unnamed:
        connection.execute(sa.text(f"UPDATE {TABLE} SET seller = :seller WHERE seller IS NULL OR TRIM(seller) = ''")
                           .bindparams(seller=_seller_for_unnamed_rows(connection)))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column('seller', existing_type=sa.String(), nullable=False)
    if unnamed:
        _audit_filled(connection, unnamed)


def _audit_filled(connection, ids: list[int]) -> None:
    """One audit event with the digests of the rows as they now stand (keyed, head locked)."""
    from consent.row_digest import AUDITED_TABLES, row_digest
    from outbound.audit import append
    table = AUDITED_TABLES[TABLE]
    existing = {column["name"] for column in sa.inspect(connection).get_columns(TABLE)}
    columns = [column for column in table.columns if column.name in existing]
    digests = {str(row.id): row_digest(row._mapping)
               for row in connection.execute(sa.select(*columns).where(table.c.id.in_(ids)).order_by(table.c.id))}
    with Session(bind=connection) as session:
        append(session, actor=ACTOR, action="consent.business_relationship.seller_filled", subject=None,
               at=datetime.now(timezone.utc),
               payload={"business_relationship_ids": ids, "row_digests": {TABLE: digests}})
        session.flush()


def downgrade() -> None:
    # The sellers filled in stay: NULL meant "not said", and under 0006 a seller is as valid.
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column('seller', existing_type=sa.String(), nullable=True)
