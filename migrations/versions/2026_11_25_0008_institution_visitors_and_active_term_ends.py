"""institution visitors (first and latest four counted visits) for the segments; an index of the
active terms by end date for the renewal segment

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 19:09:13.622815
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "institution_id, visitor_key, first_visit, visit_1, visit_2, visit_3, visit_4, member_id, "
    "linked_on"
)
# One sort of the counted visits by visitor, newest first, then one pass over each visitor's.
# A visitor key belongs to one member, so any linked visit names the member of the latest.
# PostgreSQL has no max(uuid); SQLite has no arrays.
_ROWS = """
SELECT institution_id, visitor_key, min(local_date) AS first_visit,
       max(CASE WHEN newest = 1 THEN local_date END) AS visit_1,
       max(CASE WHEN newest = 2 THEN local_date END) AS visit_2,
       max(CASE WHEN newest = 3 THEN local_date END) AS visit_3,
       max(CASE WHEN newest = 4 THEN local_date END) AS visit_4,
       {member} AS member_id,
       max(CASE WHEN member_id IS NOT NULL THEN local_date END) AS linked_on
FROM (
    SELECT institution_id, visitor_key, local_date, member_id,
           row_number() OVER (PARTITION BY institution_id, visitor_key
                              ORDER BY local_date DESC) AS newest
    FROM checkins
    WHERE counted AND visitor_key IS NOT NULL
) AS ranked
GROUP BY institution_id, visitor_key
"""
_MEMBER = {
    "postgresql": "(array_agg(member_id) FILTER (WHERE member_id IS NOT NULL))[1]",
    "sqlite": "max(member_id)",
}


def upgrade() -> None:
    op.create_table(
        "institution_visitors",
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("visitor_key", sa.String(length=32), nullable=False),
        sa.Column("first_visit", sa.Date(), nullable=False),
        sa.Column("visit_1", sa.Date(), nullable=False),
        sa.Column("visit_2", sa.Date(), nullable=True),
        sa.Column("visit_3", sa.Date(), nullable=True),
        sa.Column("visit_4", sa.Date(), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("linked_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint(
            "institution_id", "visitor_key", name=op.f("pk_institution_visitors")
        ),
    )
    # Filled from the check-ins before its foreign key and secondary indexes exist: they then
    # build and validate once, not row by row (8.3 million rows on the national seed).
    dialect = op.get_bind().dialect.name
    rows = _ROWS.format(member=_MEMBER[dialect])
    if dialect == "postgresql":
        op.execute("SET LOCAL work_mem = '512MB'")
        op.execute("SET LOCAL maintenance_work_mem = '1GB'")
        # PostgreSQL plans an INSERT ... SELECT without parallel workers, CREATE TABLE AS with
        # them: the sort of 11.8 million check-ins (national seed) goes to a temporary table
        # first, which is also not written to the WAL.
        op.execute(f"CREATE TEMPORARY TABLE visitor_rows ON COMMIT DROP AS {rows}")
        rows = "SELECT * FROM visitor_rows"
    op.execute(f"INSERT INTO institution_visitors ({_COLUMNS}) {rows}")
    with op.batch_alter_table("institution_visitors", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_institution_visitors_member_id_members"),
            "members",
            ["member_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            "ix_institution_visitors_institution_id_visit_1",
            ["institution_id", "visit_1"],
            unique=False,
            postgresql_include=["first_visit", "visit_4", "member_id", "linked_on"],
        )
        batch_op.create_index(
            batch_op.f("ix_institution_visitors_member_id"), ["member_id"], unique=False
        )

    with op.batch_alter_table("membership_terms", schema=None) as batch_op:
        batch_op.create_index(
            "ix_membership_terms_active_ends_on",
            ["ends_on", "membership_id"],
            unique=False,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE institution_visitors")


def downgrade() -> None:
    with op.batch_alter_table("membership_terms", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_membership_terms_active_ends_on",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )

    with op.batch_alter_table("institution_visitors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_institution_visitors_member_id"))
        batch_op.drop_index(
            "ix_institution_visitors_institution_id_visit_1",
            postgresql_include=["first_visit", "visit_4", "member_id", "linked_on"],
        )

    op.drop_table("institution_visitors")
