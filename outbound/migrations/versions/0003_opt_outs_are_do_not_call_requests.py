"""opt-outs are do-not-call requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:00:00

An opt-out is also a do-not-call request (47 CFR 64.1200(d)): it now puts the number on the
internal list too, and the entry records how the request came (`via`) and the revocation it was
stored as. Existing rows keep NULL: how they came was not recorded. Earlier revocations are not
copied onto the list here (audit events cannot be written from a migration); the gate blocks
every attempt on their channels through `consent_revoked` all the same.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('dnc_entries') as batch:
        batch.add_column(sa.Column('via', sa.String(), nullable=True))
        batch.add_column(sa.Column('revocation_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dnc_entries') as batch:
        batch.drop_column('revocation_id')
        batch.drop_column('via')
