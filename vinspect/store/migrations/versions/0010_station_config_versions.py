"""Station configuration as a controlled document (issue 20).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

- ``station_configs`` (append-only): each approved configuration version of a station, its
  canonical text, hash, the version it replaces, who approved it, when, why and the signature.
- ``inspections.config_sha256``: the configuration version in force for each part (NULL for
  rows written before this revision; the row hash includes it only when set, so those rows
  verify unchanged).
- ``stations.config_sha256``: the version each running station reports (plant overview).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_TABLE = "station_configs"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("config_text", sa.Text(), nullable=False),
        sa.Column("source_path", sa.String(1024), nullable=False),
        sa.Column("previous_sha256", sa.String(64), nullable=True),
        sa.Column("approved_by_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=False),
        sa.Column("approved_at", _TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("signature_id", _BIG_ID, sa.ForeignKey("signatures.id"), nullable=False),
        sa.UniqueConstraint("station_id", "config_sha256"),
        sqlite_autoincrement=True,
    )
    for table in ("inspections", "stations"):  # ADD COLUMN in place (no table copy: the triggers stay)
        op.add_column(table, sa.Column("config_sha256", sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":  # vinspect_append_only() comes from 0001
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION vinspect_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION vinspect_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {_TABLE}_no_{verb.lower()} BEFORE {verb} ON {_TABLE} "
                f"BEGIN SELECT RAISE(ABORT, 'vinspect: {verb} on {_TABLE} refused: "
                "the table is append-only'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
