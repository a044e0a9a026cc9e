"""rooms

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("customer_name", sa.String(length=120), nullable=False),
        sa.Column("customer_language", sa.String(length=8), nullable=False),
        sa.Column("expert_name", sa.String(length=120), nullable=False),
        sa.Column("expert_language", sa.String(length=8), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("direct", "relay", name="room_mode", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("recorded", sa.Boolean(), nullable=False),
        sa.Column("budget_seconds", sa.Integer(), nullable=True),
        sa.Column("tariff_currency", sa.String(length=3), nullable=True),
        sa.Column("tariff_per_minute", sa.BigInteger(), nullable=True),
        sa.Column("tariff_per_session", sa.BigInteger(), nullable=True),
        sa.Column("links_expire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "live",
                "paused",
                "ended",
                name="room_state",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("billed_seconds", sa.Integer(), nullable=False),
        sa.Column(
            "end_reason",
            sa.Enum(
                "hangup",
                "budget",
                "expired",
                "operator",
                name="room_end_reason",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=True,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recording", sa.String(length=255), nullable=True),
        sa.CheckConstraint("billed_seconds >= 0", name=op.f("ck_rooms_room_billed_not_negative")),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_rooms_session_id_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("session_id", name=op.f("uq_rooms_session_id")),
    )


def downgrade() -> None:
    op.drop_table("rooms")
