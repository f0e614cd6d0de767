"""decisions keep their location

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 12:00:00

Replay placed a stored decision's contact again with phonenumbers and zipcodes, so an upgrade of
either could change a replay. Each new decision now stores the location it resolved (validity,
the number's zones before overrides, the address's zones, states, region) in
`decisions.location`, and replay reads it. Decisions stored before keep NULL and replay as before.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("location", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("location")
