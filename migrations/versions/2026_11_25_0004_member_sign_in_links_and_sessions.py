"""member self-service: single-use sign-in links and the sessions they open

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 15:06:04.428354
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_sessions",
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_member_sessions_token_hash")),
    )
    with op.batch_alter_table("member_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_sessions_email"), ["email"], unique=False)

    op.create_table(
        "member_sign_in_links",
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_sign_in_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_member_sign_in_links_token_hash")),
    )
    with op.batch_alter_table("member_sign_in_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_sign_in_links_email"), ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member_sign_in_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_sign_in_links_email"))

    op.drop_table("member_sign_in_links")
    with op.batch_alter_table("member_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_sessions_email"))

    op.drop_table("member_sessions")
