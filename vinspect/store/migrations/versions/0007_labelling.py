"""Labelling in the browser: sets, their images, label events and model scores.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-05

All four tables are append-only (the same triggers as migration 0001): a label is changed by a
new event (a relabel, an undo, a third person's settlement), never by an update, and each event
is linked into the audit chain by its content hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_AUTOINC = {"sqlite_autoincrement": True}
_TABLES = ("label_sets", "label_images", "label_events", "label_scores")


def _id() -> sa.Column[int]:
    return sa.Column("id", _BIG_ID, primary_key=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "label_sets",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("blind_labellers", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        **_AUTOINC,
    )
    op.create_table(
        "label_images",
        _id(),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("label_sets.id"), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("suffix", sa.String(8), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("imported_at", _TS, nullable=False),
        sa.UniqueConstraint("set_id", "sha256"),
        sa.UniqueConstraint("set_id", "ordinal"),
        **_AUTOINC,
    )
    op.create_table(
        "label_events",
        _id(),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("label_sets.id"), nullable=False),
        sa.Column("image_id", _BIG_ID, sa.ForeignKey("label_images.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("regions", sa.Text(), nullable=False),
        sa.Column("catalogue_version", sa.String(16), nullable=False),
        sa.Column("previous_event_id", _BIG_ID, nullable=True),
        sa.Column("previous_label", sa.String(64), nullable=True),
        sa.Column("at", _TS, nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_label_events_image_user", "label_events", ["image_id", "user_id"])
    op.create_index("ix_label_events_set", "label_events", ["set_id", "id"])
    op.create_table(
        "label_scores",
        _id(),
        sa.Column("set_id", sa.Integer(), sa.ForeignKey("label_sets.id"), nullable=False),
        sa.Column("image_id", _BIG_ID, sa.ForeignKey("label_images.id"), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("scored_at", _TS, nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_label_scores_set", "label_scores", ["set_id", "model_sha256"])
    _append_only()


def _append_only() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        if dialect == "postgresql":  # vinspect_append_only() is created by revision 0001
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION vinspect_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION vinspect_append_only()"
            )
        else:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'vinspect: {verb} on {table} refused: "
                    "the table is append-only'); END"
                )


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
