"""Analytics at plant scale (issue 17): the hourly roll-up of human judgements.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06

- ``judgement_hourly``: per UTC hour (text ``YYYY-MM-DD HH``: the NCR's detection, the audited
  part's record), station, part number, model version, machine verdict and human answer: how many
  NCRs stand with that review decision and how many blind PASS audits gave that answer. Derived
  data (not a quality record, not audited), maintained by :mod:`vinspect.store.judgement_rollup`
  with two rows of ``analytics_watermark`` (``judgement_reviews``: ``ncr_events.id``;
  ``judgement_audits``: ``audit_records.id``); it can be rebuilt at any time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judgement_hourly",
        sa.Column("hour", sa.String(13), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("part_number", sa.String(64), nullable=False),  # "" when none
        sa.Column("model_version", sa.String(64), nullable=False),  # "" when none
        sa.Column("machine", sa.String(16), nullable=False),
        sa.Column("human", sa.String(32), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour", "station_id", "part_number", "model_version", "machine", "human", name="pk_judgement_hourly"
        ),
    )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
