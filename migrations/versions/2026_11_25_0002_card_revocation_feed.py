"""card revocation feed: what scanners sync by cursor to refuse blocked and replaced cards

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:14:36.547125
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_revocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("card_id", sa.Uuid(), nullable=True),
        sa.Column("card_number", sa.String(length=20), nullable=False),
        sa.Column("min_version", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_card_revocations_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_revocations")),
    )
    with op.batch_alter_table("card_revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_revocations_card_id"), ["card_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_card_revocations_card_number"), ["card_number"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("card_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_revocations_card_number"))
        batch_op.drop_index(batch_op.f("ix_card_revocations_card_id"))

    op.drop_table("card_revocations")
