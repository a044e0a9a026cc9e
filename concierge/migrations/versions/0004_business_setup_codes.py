"""business setup codes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("businesses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("setup_code", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_businesses_setup_code"), ["setup_code"])


def downgrade() -> None:
    with op.batch_alter_table("businesses", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_businesses_setup_code"), type_="unique")
        batch_op.drop_column("setup_code")
