"""report period rollups (affinity, network) and closed payout months with their stored lines

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 16:34:39.051082
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_periods",
        sa.Column(
            "kind",
            sa.Enum(
                "month",
                "quarter",
                "year",
                name="period_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("visitors", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkin_mark", sa.BigInteger(), nullable=False),
        sa.Column("audit_mark", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("first_day <= last_day", name=op.f("ck_report_periods_ordered")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_periods")),
        sa.UniqueConstraint("kind", "first_day", name=op.f("uq_report_periods_kind_first_day")),
    )
    op.create_table(
        "period_pairs",
        sa.Column("period_id", sa.Uuid(), nullable=False),
        sa.Column("a_id", sa.Uuid(), nullable=False),
        sa.Column("b_id", sa.Uuid(), nullable=False),
        sa.Column("both", sa.Integer(), nullable=False),
        sa.CheckConstraint("a_id < b_id", name=op.f("ck_period_pairs_ordered")),
        sa.ForeignKeyConstraint(
            ["a_id"],
            ["institutions.id"],
            name=op.f("fk_period_pairs_a_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["b_id"],
            ["institutions.id"],
            name=op.f("fk_period_pairs_b_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["report_periods.id"],
            name=op.f("fk_period_pairs_period_id_report_periods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("period_id", "a_id", "b_id", name=op.f("pk_period_pairs")),
    )
    with op.batch_alter_table("period_pairs", schema=None) as batch_op:
        batch_op.create_index("ix_period_pairs_period_id_b_id", ["period_id", "b_id"], unique=False)

    op.create_table(
        "period_visitors",
        sa.Column("period_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("visitors", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_period_visitors_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["report_periods.id"],
            name=op.f("fk_period_visitors_period_id_report_periods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("period_id", "institution_id", name=op.f("pk_period_visitors")),
    )
    op.create_table(
        "payout_closings",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "model",
            sa.Enum(
                "tariff",
                "pool",
                name="clearing_model",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("payout_share_bp", sa.Integer(), nullable=True),
        sa.Column("floor_bp", sa.Integer(), nullable=True),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=True),
        sa.Column("floor_applied", sa.Boolean(), nullable=False),
        sa.Column("rate_numerator", sa.BigInteger(), nullable=True),
        sa.Column("rate_denominator", sa.BigInteger(), nullable=True),
        sa.Column("checkin_mark", sa.BigInteger(), nullable=False),
        sa.Column("audit_mark", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=254), nullable=False),
        sa.Column("closed_by_staff_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "(rate_numerator IS NULL) = (rate_denominator IS NULL)",
            name=op.f("ck_payout_closings_rate_complete"),
        ),
        sa.CheckConstraint(
            "rate_denominator IS NULL OR rate_denominator > 0",
            name=op.f("ck_payout_closings_rate_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_staff_id"],
            ["staff_users.id"],
            name=op.f("fk_payout_closings_closed_by_staff_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_payout_closings")),
    )
    op.create_table(
        "payout_closing_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("visit_month", sa.Date(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_payout_closing_lines_amount_non_negative")
        ),
        sa.CheckConstraint(
            "visit_month <= month", name=op.f("ck_payout_closing_lines_visit_month_not_later")
        ),
        sa.CheckConstraint("visits > 0", name=op.f("ck_payout_closing_lines_visits_positive")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_payout_closing_lines_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["month"],
            ["payout_closings.month"],
            name=op.f("fk_payout_closing_lines_month_payout_closings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_payout_closing_lines_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_closing_lines")),
    )
    with op.batch_alter_table("payout_closing_lines", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payout_closing_lines_institution_id_month",
            ["institution_id", "month"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_payout_closing_lines_month"), ["month"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payout_closing_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payout_closing_lines_month"))
        batch_op.drop_index("ix_payout_closing_lines_institution_id_month")

    op.drop_table("payout_closing_lines")
    op.drop_table("payout_closings")
    op.drop_table("period_visitors")
    with op.batch_alter_table("period_pairs", schema=None) as batch_op:
        batch_op.drop_index("ix_period_pairs_period_id_b_id")

    op.drop_table("period_pairs")
    op.drop_table("report_periods")
