"""calls per second shared by workers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00

A campaign's cps ceiling was kept by each worker for itself, so two workers together sent twice
the campaign's rate (60 in one second against a cps of 50). `send_pacing` holds, per campaign,
the instant from which its next carrier request may be made; every worker reserves its slot
there (one conditional row update) before each request. Rows appear on a campaign's first send.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_pacing",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id"),
    )


def downgrade() -> None:
    op.drop_table("send_pacing")
