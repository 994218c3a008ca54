"""The index of linked check-ins by local day, for the retention cut (membership/retention.py)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index(
            "ix_checkins_linked_local_date",
            ["local_date"],
            unique=False,
            postgresql_where=sa.text("member_id IS NOT NULL"),
            sqlite_where=sa.text("member_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_checkins_linked_local_date",
            postgresql_where=sa.text("member_id IS NOT NULL"),
            sqlite_where=sa.text("member_id IS NOT NULL"),
        )
