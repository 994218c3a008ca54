"""memberships.paid_until (the end of the last active term) with an index of the memberships
without auto-renew by it, for the renewal segment; the index of active terms by end date goes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILL = """
UPDATE memberships SET paid_until = (
    SELECT max(ends_on) FROM membership_terms
    WHERE membership_terms.membership_id = memberships.id AND membership_terms.status = 'active'
)
"""
# PostgreSQL: one aggregate over the terms joined to the memberships, instead of a correlated
# probe per membership (1.5 million on the national seed).
_FILL_POSTGRESQL = """
UPDATE memberships SET paid_until = last.ends_on
FROM (
    SELECT membership_id, max(ends_on) AS ends_on FROM membership_terms
    WHERE status = 'active' GROUP BY membership_id
) AS last
WHERE last.membership_id = memberships.id
"""


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paid_until", sa.Date(), nullable=True))
    op.execute(_FILL_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _FILL)
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_memberships_renewal_due",
            ["paid_until", "status"],
            unique=False,
            postgresql_where=sa.text("NOT auto_renew"),
            sqlite_where=sa.text("NOT auto_renew"),
        )
    with op.batch_alter_table("membership_terms", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_membership_terms_active_ends_on",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE memberships")


def downgrade() -> None:
    with op.batch_alter_table("membership_terms", schema=None) as batch_op:
        batch_op.create_index(
            "ix_membership_terms_active_ends_on",
            ["ends_on", "membership_id"],
            unique=False,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_memberships_renewal_due",
            postgresql_where=sa.text("NOT auto_renew"),
            sqlite_where=sa.text("NOT auto_renew"),
        )
        batch_op.drop_column("paid_until")
