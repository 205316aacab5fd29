"""Station registry (issue 18): one mutable row per station with its latest report.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-05

``stations`` holds each station's identity (site, line, host, pid, software version), its active
model, state and counters, rates and latency, and a heartbeat time, upserted by the running
station every few seconds; the reviewer app's plant overview reads it. Operational status, not a
quality record: not append-only, not under the audit chain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("line_id", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("period_s", sa.Float(), nullable=False),
        sa.Column("triggers", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.BigInteger(), nullable=False),
        sa.Column("review", sa.BigInteger(), nullable=False),
        sa.Column("failed_defect", sa.BigInteger(), nullable=False),
        sa.Column("failed_fault", sa.BigInteger(), nullable=False),
        sa.Column("parts_per_s", sa.Float(), nullable=True),
        sa.Column("reject_rate", sa.Float(), nullable=True),
        sa.Column("p50_ms", sa.Float(), nullable=True),
        sa.Column("p99_ms", sa.Float(), nullable=True),
        sa.Column("opcua_endpoint", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("stations")
