"""check-ins keep age band and region; covering index for reports; institution day counters

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 16:30:12.400001

Existing check-ins get their age band and region from their member, and the counters are built
from the existing check-ins, in SQL on both databases. The band labels and the NO_PRODUCT
sentinel are copied here on purpose: a migration must not change when the code does.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AGE_BANDS = (
    (0, "0-12"),
    (13, "13-17"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-54"),
    (55, "55-64"),
    (65, "65+"),
)
_NO_PRODUCT = uuid.UUID(int=0)


def _yyyymmdd(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(to_char({column}, 'YYYYMMDD') AS INTEGER)"
    return f"CAST(strftime('%Y%m%d', {column}) AS INTEGER)"


def _sqlite_local_hour(value: str | None, timezone: str) -> int | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).hour


def _backfill(dialect: str) -> None:
    birth = _yyyymmdd("m.birth_date", dialect)
    day = _yyyymmdd("checkins.local_date", dialect)
    region = "NULLIF(substr(m.postal_code, 1, 2), '')"
    if dialect == "postgresql":
        # Millions of rows at national scale: one hash join (in memory), each member's birth
        # date formatted once, and the age computed once per row; width_bucket gives 0, an
        # index outside the array (NULL), for a birth after the visit.
        lows = ", ".join(str(low) for low, _ in _AGE_BANDS)
        labels = ", ".join(f"'{label}'" for _, label in _AGE_BANDS)
        op.execute("SET LOCAL work_mem = '256MB'")
        op.execute(
            f"UPDATE checkins SET age_band = (ARRAY[{labels}])[width_bucket("
            f"floor(({day} - m.birth) / 10000.0)::int, ARRAY[{lows}])], "
            f"region = {region} "
            f"FROM (SELECT m.id, {birth} AS birth, m.postal_code FROM members m) m "
            "WHERE m.id = checkins.member_id"
        )
    else:
        bands = " ".join(
            f"WHEN ({day} - {birth}) / 10000 >= {low} THEN '{label}'"
            for low, label in reversed(_AGE_BANDS)
        )
        band = f"CASE WHEN {birth} > {day} THEN NULL {bands} END"
        op.execute(
            f"UPDATE checkins SET age_band = (SELECT {band} FROM members m "
            "WHERE m.id = checkins.member_id), "
            f"region = (SELECT {region} FROM members m WHERE m.id = checkins.member_id) "
            "WHERE member_id IS NOT NULL"
        )
    if dialect == "postgresql":
        hour = "CAST(extract(hour FROM timezone(i.timezone, c.scanned_at)) AS INTEGER)"
    else:
        bind = op.get_bind()
        bind.connection.dbapi_connection.create_function(  # type: ignore[union-attr]
            "migration_local_hour", 2, _sqlite_local_hour, deterministic=True
        )
        hour = "migration_local_hour(c.scanned_at, i.timezone)"
    op.get_bind().execute(
        sa.text(
            "INSERT INTO institution_day_counts (institution_id, local_date, hour, product_id, "
            "result, reason, counted, checkins) "
            f"SELECT c.institution_id, c.local_date, {hour}, "
            "COALESCE(c.product_id, :no_product), c.result, c.reason, c.counted, count(*) "
            "FROM checkins c JOIN institutions i ON i.id = c.institution_id "
            f"GROUP BY c.institution_id, c.local_date, {hour}, "
            "COALESCE(c.product_id, :no_product), c.result, c.reason, c.counted"
        ).bindparams(sa.bindparam("no_product", _NO_PRODUCT, type_=sa.Uuid()))
    )


def upgrade() -> None:
    op.create_table(
        "institution_day_counts",
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("checkins", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "institution_id",
            "local_date",
            "hour",
            "product_id",
            "result",
            "reason",
            "counted",
            name=op.f("pk_institution_day_counts"),
        ),
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("age_band", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("region", sa.String(length=8), nullable=True))
    # Filled before the index exists, so the index is built once rather than row by row.
    _backfill(op.get_bind().dialect.name)
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index(
            "ix_checkins_counted_cover",
            ["institution_id", "local_date", "visitor_key"],
            unique=False,
            postgresql_include=["product_id", "scanned_at", "member_id", "age_band", "region"],
            postgresql_where=sa.text("counted"),
            sqlite_where=sa.text("counted"),
        )


def downgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index("ix_checkins_counted_cover")
        batch_op.drop_column("region")
        batch_op.drop_column("age_band")

    op.drop_table("institution_day_counts")
