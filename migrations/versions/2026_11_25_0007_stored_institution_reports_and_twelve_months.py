"""stored institution reports (visits, flows) of closed periods, and the twelve-months period kind

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 19:07:14.475152
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = ("month", "quarter", "year")
_KINDS_AFTER = (*_KINDS_BEFORE, "twelve_months")


def _allow_kinds(kinds: Sequence[str]) -> None:
    """Replace the CHECK of `report_periods.kind` (a VARCHAR, not a native enum type).

    SQLite rebuilds the table to change a CHECK, and dropping the old table with foreign keys
    on deletes its rollup rows by cascade while the copied period rows would stay: so the
    rollups, derived data that the next refresh computes again, are deleted first, whole.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM report_periods")
    listed = ", ".join(f"'{kind}'" for kind in kinds)
    with op.batch_alter_table("report_periods", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_report_periods_period_kind"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_report_periods_period_kind"), sa.text(f"kind IN ({listed})")
        )


def upgrade() -> None:
    _allow_kinds(_KINDS_AFTER)
    op.create_table(
        "stored_reports",
        sa.Column("period_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column(
            "report",
            sa.Enum(
                "visits",
                "flows",
                name="stored_report_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("k", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_stored_reports_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["report_periods.id"],
            name=op.f("fk_stored_reports_period_id_report_periods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "period_id", "institution_id", "report", "k", name=op.f("pk_stored_reports")
        ),
    )


def downgrade() -> None:
    op.drop_table("stored_reports")
    op.execute("DELETE FROM report_periods WHERE kind = 'twelve_months'")
    _allow_kinds(_KINDS_BEFORE)
