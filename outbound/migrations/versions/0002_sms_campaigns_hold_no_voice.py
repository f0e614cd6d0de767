"""sms campaigns hold no voice

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:00:00

Until this revision the Campaign model gave `voice` the default "live", and SQLAlchemy stores a
None as the column default, so every sms campaign's row said voice "live". Data only: the
column was nullable all along.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE campaigns SET voice = NULL WHERE channel = 'sms'"))


def downgrade() -> None:
    # NULL is as valid under 0001; the old default's "live" on sms rows meant nothing.
    pass
