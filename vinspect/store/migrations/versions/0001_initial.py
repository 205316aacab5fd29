"""Initial store schema: inspections, NCRs, evidence, events, signatures, audit, outbox, users.

Revision ID: 0001
Revises:
Create Date: 2026-01-15

Append-only tables get BEFORE UPDATE / BEFORE DELETE triggers that raise, on SQLite and on
PostgreSQL (where TRUNCATE is refused too).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY = ("inspections", "ncrs", "ncr_evidence", "ncr_events", "signatures", "audit_records")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_AUTOINC = {"sqlite_autoincrement": True}


def _id() -> sa.Column[int]:
    return sa.Column("id", _BIG_ID, primary_key=True, nullable=False)


def _users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        **_AUTOINC,
    )


def _inspections() -> None:
    op.create_table(
        "inspections",
        _id(),
        sa.Column("inspection_id", sa.String(64), nullable=False, unique=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("part_seq", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("fail_at", sa.Float(), nullable=False),
        sa.Column("review_at", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("source_id", sa.String(64), nullable=True),
        sa.Column("frame_id", sa.BigInteger(), nullable=True),
        sa.Column("captured_at", _TS, nullable=True),
        sa.Column("part_id", sa.String(128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recorded_at", _TS, nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_inspections_station_recorded", "inspections", ["station_id", "recorded_at"])


def _ncr_columns() -> list[sa.Column[object]]:
    strings = [
        ("ncr_uuid", 36),
        ("ncr_number", 32),
        ("schema_version", 16),
        ("site_id", 64),
        ("line_id", 64),
        ("station_id", 64),
        ("camera_id", 64),
        ("detection_point", 16),
        ("detected_by_kind", 8),
        ("detected_by_id", 128),
        ("part_number", 64),
        ("part_revision", 32),
        ("part_name", 200),
    ]
    optional = [("serial_number", 128), ("lot_number", 128), ("work_order", 128), ("operation", 128)]
    cols: list[sa.Column[object]] = [sa.Column(n, sa.String(size), nullable=False) for n, size in strings]
    cols += [sa.Column(n, sa.String(size), nullable=True) for n, size in optional]
    return [
        *cols,
        sa.Column("ncr_seq", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("detected_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("quantity_affected", sa.Integer(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("requirement_ref", sa.String(200), nullable=False),
        sa.Column("defect_code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("machine_verdict", sa.String(16), nullable=False),
        sa.Column("inference", sa.Text(), nullable=False),
        sa.Column("containment", sa.Text(), nullable=False),
        sa.Column("related_ncr_uuids", sa.Text(), nullable=False),
        sa.Column("inspection_id", sa.String(64), sa.ForeignKey("inspections.inspection_id"), nullable=True),
    ]


def _ncrs() -> None:
    op.create_table(
        "ncrs", _id(), *_ncr_columns(), sa.UniqueConstraint("ncr_uuid"), sa.UniqueConstraint("ncr_number"), **_AUTOINC
    )
    op.create_index("ix_ncrs_detected", "ncrs", ["detected_at"])
    op.create_index("ix_ncrs_station_id", "ncrs", ["station_id"])
    op.create_index("ix_ncrs_defect_code", "ncrs", ["defect_code"])
    op.create_table(
        "ncr_evidence",
        _id(),
        sa.Column("ncr_id", _BIG_ID, sa.ForeignKey("ncrs.id"), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("uri", sa.String(256), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("captured_at", _TS, nullable=True),
        sa.Column("camera_settings", sa.Text(), nullable=False),
        sa.UniqueConstraint("ncr_id", "ordinal"),
        **_AUTOINC,
    )
    op.create_index("ix_ncr_evidence_sha256", "ncr_evidence", ["sha256"])


def _signatures_and_events() -> None:
    op.create_table(
        "signatures",
        _id(),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("signer_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("printed_name", sa.String(200), nullable=False),
        sa.Column("meaning", sa.String(32), nullable=False),
        sa.Column("signed_at", _TS, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_signatures_entity", "signatures", ["entity", "entity_id"])
    op.create_table(
        "ncr_events",
        _id(),
        sa.Column("ncr_id", _BIG_ID, sa.ForeignKey("ncrs.id"), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("signature_id", _BIG_ID, sa.ForeignKey("signatures.id"), nullable=True),
        sa.UniqueConstraint("ncr_id", "revision"),
        **_AUTOINC,
    )


def _audit_and_outbox() -> None:
    op.create_table(
        "audit_records",
        _id(),
        sa.Column("seq", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(64), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("record_sha256", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_audit_entity", "audit_records", ["entity", "entity_id"])
    op.create_table(
        "outbox",
        _id(),
        sa.Column("ncr_uuid", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(80), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.UniqueConstraint("target", "idempotency_key"),
        **_AUTOINC,
    )
    op.create_index("ix_outbox_ncr_uuid", "outbox", ["ncr_uuid"])
    op.create_index("ix_outbox_state_due", "outbox", ["state", "next_attempt_at"])


def _append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("""
            CREATE FUNCTION vinspect_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'vinspect: % on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
    for table in _APPEND_ONLY:
        if dialect == "postgresql":
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


def upgrade() -> None:
    _users()
    _inspections()
    _ncrs()
    _signatures_and_events()
    _audit_and_outbox()
    _append_only_triggers()


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
