"""Quality analytics and CAPA: frozen SPC baselines, quality alarms, 8D corrective actions.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-05

- ``spc_baselines`` (append-only): frozen p-chart limits per station and chart; a new baseline is
  a new row, approved by a quality engineer.
- ``quality_alarms``: SPC rule violations and drift alarms, one row per rule per run (unique);
  acknowledgement fills the ``ack_*`` columns once (audited, signed).
- ``capas``, ``capa_steps``, ``capa_links`` (append-only): 8D corrective actions, their D0-D7 steps
  (owner, due date, content, owner's signature) and the NCRs they answer.
- ``pass_evidence`` (append-only): image and heatmap of each PASS part drawn into the blind audit
  sample, so the audit is done at the screen.
- ``ix_inspections_recorded_verdict``: KPI and p-chart counts over a time window;
  ``ix_inspections_part``: a part's first inspection (first-pass yield) and its history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_AUTOINC = {"sqlite_autoincrement": True}
_APPEND_ONLY = ("spc_baselines", "capa_links", "pass_evidence")


def _id() -> sa.Column[int]:
    return sa.Column("id", _BIG_ID, primary_key=True, nullable=False)


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":  # vinspect_append_only() comes from 0001
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION vinspect_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION vinspect_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'vinspect: {verb} on {table} refused: "
            "the table is append-only'); END"
        )


def upgrade() -> None:
    op.create_index("ix_inspections_recorded_verdict", "inspections", ["recorded_at", "verdict"])
    op.create_index("ix_inspections_part", "inspections", ["part_id", "id"])
    op.create_table(
        "spc_baselines",
        _id(),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("chart", sa.String(32), nullable=False),
        sa.Column("window_from", _TS, nullable=False),
        sa.Column("window_to", _TS, nullable=False),
        sa.Column("subgroup_minutes", sa.Integer(), nullable=False),
        sa.Column("subgroup_parts", sa.Integer(), nullable=True),
        sa.Column("p_bar", sa.Float(), nullable=False),
        sa.Column("subgroups", sa.Integer(), nullable=False),
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.Column("defects", sa.BigInteger(), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        **_AUTOINC,
    )
    op.create_index("ix_spc_baselines_station_chart", "spc_baselines", ["station_id", "chart"])
    op.create_table(
        "quality_alarms",
        _id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("chart", sa.String(64), nullable=False),
        sa.Column("rule", sa.Integer(), nullable=False),
        sa.Column("first_at", _TS, nullable=False),
        sa.Column("last_at", _TS, nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raised_at", _TS, nullable=False),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("ack_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("ack_reason", sa.Text(), nullable=True),
        sa.Column("ack_signature_id", _BIG_ID, sa.ForeignKey("signatures.id"), nullable=True),
        sa.UniqueConstraint("kind", "station_id", "chart", "rule", "first_at", name="uq_quality_alarms_run"),
        **_AUTOINC,
    )
    op.create_index("ix_quality_alarms_open", "quality_alarms", ["acknowledged_at", "raised_at"])
    op.create_table(
        "capas",
        _id(),
        sa.Column("capa_number", sa.String(32), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=True),
        sa.Column("defect_codes", sa.Text(), nullable=False),
        sa.Column("opened_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("baseline", sa.Text(), nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("closure_signature_id", _BIG_ID, sa.ForeignKey("signatures.id"), nullable=True),
        **_AUTOINC,
    )
    op.create_index("ix_capas_status", "capas", ["status"])
    op.create_table(
        "capa_steps",
        _id(),
        sa.Column("capa_id", _BIG_ID, sa.ForeignKey("capas.id"), nullable=False),
        sa.Column("step", sa.String(4), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("signed_at", _TS, nullable=True),
        sa.Column("signature_id", _BIG_ID, sa.ForeignKey("signatures.id"), nullable=True),
        sa.UniqueConstraint("capa_id", "step"),
        **_AUTOINC,
    )
    op.create_table(
        "capa_links",
        _id(),
        sa.Column("capa_id", _BIG_ID, sa.ForeignKey("capas.id"), nullable=False),
        sa.Column("ncr_uuid", sa.String(36), nullable=False),
        sa.Column("linked_at", _TS, nullable=False),
        sa.Column("linked_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("capa_id", "ncr_uuid"),
        **_AUTOINC,
    )
    op.create_index("ix_capa_links_ncr_uuid", "capa_links", ["ncr_uuid"])
    op.create_table(
        "pass_evidence",
        _id(),
        sa.Column("inspection_id", sa.String(64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("uri", sa.String(256), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("captured_at", _TS, nullable=True),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.UniqueConstraint("inspection_id", "ordinal"),
        **_AUTOINC,
    )
    op.create_index("ix_pass_evidence_sha256", "pass_evidence", ["sha256"])
    for table in _APPEND_ONLY:
        _append_only(table)


def downgrade() -> None:
    raise NotImplementedError("the quality record store is never downgraded: restore a backup instead")
