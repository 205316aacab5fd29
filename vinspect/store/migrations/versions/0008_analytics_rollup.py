"""Analytics at plant scale (issue 17): part number per inspection, hourly roll-up with a watermark.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

- ``inspections.part_number`` (nullable; rows stored before this revision have none): the
  station's product part number, written by the store sink, so KPIs can be grouped and filtered
  by part number.
- ``inspection_hourly``: per UTC hour (text ``YYYY-MM-DD HH``), station, part number, model
  version, verdict and first fault reason: parts, model rejects, first inspections and first
  passes. Derived data (not a quality record, not audited): it can be rebuilt from
  ``inspections`` at any time.
- ``analytics_watermark``: the highest inspection id already counted in ``inspection_hourly``.
  Rows above it are read raw by the dashboard, so the roll-up is never stale, only slower to read
  until the next roll-up pass (see :mod:`vinspect.store.analytics_rollup`).
- ``spc_baselines.sigma_z`` (nullable): set when the limits were frozen as a Laney p'-chart.
- ``ix_audit_action_at``: the blind PASS audits answered since a time (the dashboard's escape
  rate and agreement) without reading the whole audit trail.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("inspections", sa.Column("part_number", sa.String(64), nullable=True))
    op.add_column("spc_baselines", sa.Column("sigma_z", sa.Float(), nullable=True))
    op.create_table(
        "inspection_hourly",
        sa.Column("hour", sa.String(13), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("part_number", sa.String(64), nullable=False),  # "" when the inspection had none
        sa.Column("model_version", sa.String(64), nullable=False),  # "" when the inspection had none
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("fault", sa.String(64), nullable=False),  # "" when no fault reason
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.Column("model_rejects", sa.BigInteger(), nullable=False),
        sa.Column("first_parts", sa.BigInteger(), nullable=False),
        sa.Column("first_passed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "station_id", "part_number", "model_version", "verdict", "fault", name="pk_inspection_hourly"
        ),
    )
    op.create_index("ix_audit_action_at", "audit_records", ["action", "at"])
    op.create_table(
        "analytics_watermark",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
