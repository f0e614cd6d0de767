"""consent belongs to a seller

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:00:00

A consent now counts only for campaigns of the seller that obtained it, so every consent row
names one (consent_records.seller becomes NOT NULL). Rows recorded without a seller get:
- the seller of the one campaign on file, when exactly one exists (its conversation seller_name,
  else its name: what its calls say they are from), since their consents can only have been
  gathered for it;
- otherwise "unknown" (consent.ledger_io.UNKNOWN_SELLER), which matches no campaign: those
  consents stop counting until they are imported again naming their seller (fail closed).
Rows that already named a seller keep it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWN_SELLER = "unknown"     # a copy: a migration must not change when the code does


def _campaign_seller(name: str, settings) -> str:
    if isinstance(settings, str):
        settings = json.loads(settings or "{}")
    seller_name = ((settings or {}).get("conversation") or {}).get("seller_name")
    return seller_name or name


def _seller_for_unnamed_consents() -> str:
    campaigns = op.get_bind().execute(sa.text("SELECT name, settings FROM campaigns")).all()
    if len(campaigns) != 1:
        return UNKNOWN_SELLER
    return _campaign_seller(*campaigns[0])


def upgrade() -> None:
    seller = _seller_for_unnamed_consents()
    op.execute(sa.text("UPDATE consent_records SET seller = :seller WHERE seller IS NULL OR TRIM(seller) = ''")
               .bindparams(seller=seller))
    with op.batch_alter_table('consent_records') as batch:
        batch.alter_column('seller', existing_type=sa.String(), nullable=False)


def downgrade() -> None:
    # The sellers filled in stay: NULL meant "not said", and under 0004 a seller is as valid.
    with op.batch_alter_table('consent_records') as batch:
        batch.alter_column('seller', existing_type=sa.String(), nullable=True)
