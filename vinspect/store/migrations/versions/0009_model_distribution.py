"""Model distribution to chosen stations (issue 18): bundle archives and station assignments.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

``model_bundles`` keeps each distributed bundle as one deterministic tar archive (a few MB to tens
of MB) with its SHA-256, so stations on other PCs pull it from the database they already reach
and need no shared file system. ``model_assignments`` holds one row per station and assignment
(the newest is current): who assigned which version, under which approval, and the outcome the
station reported (``SWITCHED`` or ``REFUSED`` with the reason). Both the assignment and the
outcome are also audit rows (``model.distribute``, ``model.switched``, ``model.refused``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_AUTOINC = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "model_bundles",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("stored_by", sa.String(128), nullable=False),
        sa.Column("stored_at", _TS, nullable=False),
        sa.UniqueConstraint("name", "version"),
        **_AUTOINC,
    )
    op.create_table(
        "model_assignments",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=False),
        sa.Column("approval", sa.Text(), nullable=False),
        sa.Column("assigned_by", sa.String(128), nullable=False),
        sa.Column("assigned_at", _TS, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("outcome_at", _TS, nullable=True),
        **_AUTOINC,
    )
    op.create_index("ix_model_assignments_station", "model_assignments", ["station_id", "id"])


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
