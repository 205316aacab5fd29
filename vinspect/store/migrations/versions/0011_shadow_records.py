"""Shadow mode in the store (issue 20): every station's shadow statistics and disagreements.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- ``shadow_stats``: a shadow candidate's latest statistics per station (upserted by the station,
  like its ``stations`` row; the station role may update it).
- ``shadow_disagreements`` (append-only): each part a candidate judged differently from the
  active model, both verdicts and scores, and the frame's evidence hash (the frame itself lives
  in the evidence store, as NCR images do).

A plant's central reviewer app reads both, so it sees every store-backed station's shadows; a
store-less station keeps writing them under ``<data dir>/shadow/``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_APPEND_ONLY = "shadow_disagreements"


def upgrade() -> None:
    op.create_table(
        "shadow_stats",
        sa.Column("station_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("candidate", sa.String(130), primary_key=True, nullable=False),
        sa.Column("candidate_sha256", sa.String(64), nullable=False),
        sa.Column("active_model", sa.String(256), nullable=True),
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.Column("stats_json", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        _APPEND_ONLY,
        sa.Column("id", _BIG_ID, primary_key=True, nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("candidate", sa.String(130), nullable=False),
        sa.Column("inspection_id", sa.String(64), nullable=False),
        sa.Column("part_seq", sa.BigInteger(), nullable=True),
        sa.Column("part_id", sa.String(128), nullable=True),
        sa.Column("captured_at", _TS, nullable=False),
        sa.Column("active_model", sa.String(256), nullable=True),
        sa.Column("active_verdict", sa.String(16), nullable=False),
        sa.Column("active_score", sa.Float(), nullable=True),
        sa.Column("active_reasons", sa.Text(), nullable=False),
        sa.Column("shadow_verdict", sa.String(16), nullable=False),
        sa.Column("shadow_score", sa.Float(), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.UniqueConstraint("candidate", "inspection_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_shadow_disagreements_candidate", _APPEND_ONLY, ["candidate", "id"])
    if op.get_bind().dialect.name == "postgresql":  # vinspect_append_only() comes from 0001
        op.execute(
            f"CREATE TRIGGER {_APPEND_ONLY}_append_only BEFORE UPDATE OR DELETE ON {_APPEND_ONLY} "
            "FOR EACH ROW EXECUTE FUNCTION vinspect_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {_APPEND_ONLY}_no_truncate BEFORE TRUNCATE ON {_APPEND_ONLY} "
            "FOR EACH STATEMENT EXECUTE FUNCTION vinspect_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {_APPEND_ONLY}_no_{verb.lower()} BEFORE {verb} ON {_APPEND_ONLY} "
                f"BEGIN SELECT RAISE(ABORT, 'vinspect: {verb} on {_APPEND_ONLY} refused: "
                "the table is append-only'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
