"""dnc coverage per area code (no schema change)

Per-area-code coverage and sync dates of the national registry live in the registry store's
manifest on disk, not in SQL, so this revision changes nothing. It stays in the chain because
0005 revises it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
