"""Analytics at plant scale (issue 17): the hourly roll-up of human judgements.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

- ``judgement_hourly``: per UTC hour (text ``YYYY-MM-DD HH``: the NCR's detection, the audited
  part's record), station, part number, model version, machine verdict and human answer: how many
  NCRs stand with that review decision and how many blind PASS audits gave that answer. Derived
  data (not a quality record, not audited), maintained by :mod:`vinspect.store.judgement_rollup`
  with two rows of ``analytics_watermark`` (``judgement_reviews``: ``ncr_events.id``;
  ``judgement_audits``: ``audit_records.id``); it can be rebuilt at any time.
- ``inspection_monthly`` and ``judgement_monthly``: the two hourly roll-ups summed per UTC month and
  hour of the day (key ``YYYY-MM-01 HH``), kept equal to those sums by every roll-up transaction; a
  year's hour-of-day figures read 12 x 24 slots instead of 8,760 hours. ``inspection_monthly`` is
  filled here from ``inspection_hourly`` (``judgement_hourly`` starts empty, as do its watermarks).
- ``ix_ncr_events_superseded`` (partial: ``kind = 'SUPERSEDED'``): the NCRs a second person judged,
  for reviewer-against-reviewer agreement, without reading every NCR event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("hour", sa.String(13), nullable=False),  # hourly: "YYYY-MM-DD HH"; monthly: "YYYY-MM-01 HH"
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("part_number", sa.String(64), nullable=False),  # "" when none
        sa.Column("model_version", sa.String(64), nullable=False),  # "" when none
        sa.Column("machine", sa.String(16), nullable=False),
        sa.Column("human", sa.String(32), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "judgement_hourly",
        *_columns(),
        sa.PrimaryKeyConstraint(
            "hour", "station_id", "part_number", "model_version", "machine", "human", name="pk_judgement_hourly"
        ),
    )
    op.create_table(
        "judgement_monthly",
        *_columns(),
        sa.PrimaryKeyConstraint(
            "hour", "station_id", "part_number", "model_version", "machine", "human", name="pk_judgement_monthly"
        ),
    )
    op.create_table(
        "inspection_monthly",
        sa.Column("hour", sa.String(13), nullable=False),  # "YYYY-MM-01 HH": the month and the hour of the day
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("part_number", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("fault", sa.String(64), nullable=False),
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.Column("model_rejects", sa.BigInteger(), nullable=False),
        sa.Column("first_parts", sa.BigInteger(), nullable=False),
        sa.Column("first_passed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "station_id", "part_number", "model_version", "verdict", "fault", name="pk_inspection_monthly"
        ),
    )
    op.execute(
        "INSERT INTO inspection_monthly (hour, station_id, part_number, model_version, verdict, fault, parts, "
        "model_rejects, first_parts, first_passed) "
        "SELECT substr(hour, 1, 8) || '01' || substr(hour, 11, 3), station_id, part_number, model_version, verdict, "
        "fault, sum(parts), sum(model_rejects), sum(first_parts), sum(first_passed) FROM inspection_hourly "
        "GROUP BY substr(hour, 1, 8) || '01' || substr(hour, 11, 3), station_id, part_number, model_version, "
        "verdict, fault"
    )
    op.create_index(
        "ix_ncr_events_superseded",
        "ncr_events",
        ["ncr_id"],
        postgresql_where=sa.text("kind = 'SUPERSEDED'"),
        sqlite_where=sa.text("kind = 'SUPERSEDED'"),
    )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
